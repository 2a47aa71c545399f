"""mesh: a peer-to-peer compute mesh for AI inference with verifiable receipts."""
