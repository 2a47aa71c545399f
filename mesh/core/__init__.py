"""The sans-IO core: identity, messages, signing, receipts, model identity.

Nothing under ``mesh.core`` imports trio, libp2p or torch (a test checks it):
pure functions and data, with time passed in as a parameter.
"""

from mesh.core.envelope import Signed, SignedMessage, open_signed, pae, sign_message
from mesh.core.identity import (
    Identity,
    load_key_file,
    peer_id_from_public_key,
    public_key_from_peer_id,
    write_key_file,
)
from mesh.core.messages import (
    CapacityRecord,
    ErrorReply,
    Receipt,
    Request,
    Result,
    Task,
    Verdict,
    decode_request,
    decode_response,
    encode_request,
    encode_result,
)
from mesh.core.model_root import (
    TensorLeaf,
    format_root,
    inclusion_proof,
    make_leaf,
    model_root_of_files,
    model_root_of_tensors,
    parse_root,
    read_safetensors_leaves,
    verify_inclusion,
)
from mesh.core.receipt_log import ReceiptLog, read_receipts
from mesh.core.receipts import (
    ZERO_HASH,
    is_equivocation,
    make_receipt,
    verify_chain_link,
    verify_receipt,
)
from mesh.core.replay import ReplayCache, admit_task
from mesh.core.signing import verify_capacity, verify_task, verify_verdict
from mesh.core.tensors import Tensor
from mesh.core.values import (
    Values,
    decode_values,
    encode_values,
    values_from_wire,
    values_hash,
    values_to_wire,
)

__all__ = [
    "ZERO_HASH",
    "CapacityRecord",
    "ErrorReply",
    "Identity",
    "Receipt",
    "ReceiptLog",
    "ReplayCache",
    "Request",
    "Result",
    "Signed",
    "SignedMessage",
    "Task",
    "Tensor",
    "TensorLeaf",
    "Values",
    "Verdict",
    "admit_task",
    "decode_request",
    "decode_response",
    "decode_values",
    "encode_request",
    "encode_result",
    "encode_values",
    "format_root",
    "inclusion_proof",
    "is_equivocation",
    "load_key_file",
    "make_leaf",
    "make_receipt",
    "model_root_of_files",
    "model_root_of_tensors",
    "open_signed",
    "pae",
    "parse_root",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "read_receipts",
    "read_safetensors_leaves",
    "sign_message",
    "values_from_wire",
    "values_hash",
    "values_to_wire",
    "verify_capacity",
    "verify_chain_link",
    "verify_inclusion",
    "verify_receipt",
    "verify_task",
    "verify_verdict",
    "write_key_file",
]
