"""The sans-IO core: identity, messages, signing, receipts, model identity.

Nothing under ``mesh.core`` imports trio, libp2p or torch (a test checks it):
pure functions and data, with time passed in as a parameter.
"""

from mesh.core.envelope import Signed, SignedMessage, open_signed, pae, sign_message
from mesh.core.identity import Identity, peer_id_from_public_key, public_key_from_peer_id
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
    model_root_of_tensors,
    parse_root,
    verify_inclusion,
)
from mesh.core.receipt_chain import ChainState, check_chain, open_records
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
    "ChainState",
    "ErrorReply",
    "Identity",
    "Receipt",
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
    "check_chain",
    "decode_request",
    "decode_response",
    "decode_values",
    "encode_request",
    "encode_result",
    "encode_values",
    "format_root",
    "inclusion_proof",
    "is_equivocation",
    "make_leaf",
    "make_receipt",
    "model_root_of_tensors",
    "open_records",
    "open_signed",
    "pae",
    "parse_root",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
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
]
