"""mesh: a peer-to-peer compute mesh for AI inference with verifiable receipts.

The public surface. Run a model somewhere on the mesh and get a verified result::

    import mesh

    with mesh.Client(bootstrap="bootstrap-nodes.txt") as client:
        result = client.run("minilm-l6", {"texts": ["hello mesh"]})
        print(result.outputs["embeddings"], result.worker, result.receipt.message.seq)

or from trio, ``async with mesh.AsyncClient.connect(bootstrap=...) as client``.
Every error is a :class:`mesh.MeshError` (the tree is in :mod:`mesh.errors`).

Names are imported on first use (module ``__getattr__``), so ``import mesh``
stays cheap and never imports torch or libp2p.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mesh.errors import (
    BadSignature,
    Busy,
    Closed,
    CommitmentMismatch,
    ConfigError,
    DeadlineExceeded,
    Disputed,
    Expired,
    InternalError,
    InvalidInput,
    KeyFileError,
    MalformedMessage,
    MeshError,
    ModelError,
    NetworkError,
    NoPeersAvailable,
    OutputMismatch,
    PeerUnavailable,
    ProtocolError,
    Replayed,
    StreamDiverged,
    StreamError,
    StreamInterrupted,
    TaskMismatch,
    TooLarge,
    UnknownModel,
    VerificationError,
)

if TYPE_CHECKING:
    from mesh.client.async_client import AsyncClient
    from mesh.client.config import ClientConfig
    from mesh.client.results import PeerList, PeerView, RunResult
    from mesh.client.retry import RetryPolicy
    from mesh.client.streaming import StreamChunk, TokenStream
    from mesh.client.sync_client import Client
    from mesh.core.envelope import Signed
    from mesh.core.identity import Identity
    from mesh.core.messages import CapacityRecord, Receipt, Task
    from mesh.core.receipts import verify_receipt
    from mesh.core.tensors import Tensor
    from mesh.core.values import Values
    from mesh.files.keyfile import load_key_file, write_key_file
    from mesh.node.config import NodeConfig
    from mesh.node.service import Node, run_node

__version__ = "0.1.0"

# name -> module it lives in (imported on first access).
_LAZY: dict[str, str] = {
    "AsyncClient": "mesh.client.async_client",
    "ClientConfig": "mesh.client.config",
    "PeerList": "mesh.client.results",
    "PeerView": "mesh.client.results",
    "RunResult": "mesh.client.results",
    "RetryPolicy": "mesh.client.retry",
    "StreamChunk": "mesh.client.streaming",
    "TokenStream": "mesh.client.streaming",
    "Client": "mesh.client.sync_client",
    "Signed": "mesh.core.envelope",
    "Identity": "mesh.core.identity",
    "load_key_file": "mesh.files.keyfile",
    "write_key_file": "mesh.files.keyfile",
    "CapacityRecord": "mesh.core.messages",
    "Receipt": "mesh.core.messages",
    "Task": "mesh.core.messages",
    "verify_receipt": "mesh.core.receipts",
    "Tensor": "mesh.core.tensors",
    "Values": "mesh.core.values",
    "NodeConfig": "mesh.node.config",
    "Node": "mesh.node.service",
    "run_node": "mesh.node.service",
}

__all__ = [
    "AsyncClient",
    "BadSignature",
    "Busy",
    "CapacityRecord",
    "Client",
    "ClientConfig",
    "Closed",
    "CommitmentMismatch",
    "ConfigError",
    "DeadlineExceeded",
    "Disputed",
    "Expired",
    "Identity",
    "InternalError",
    "InvalidInput",
    "KeyFileError",
    "MalformedMessage",
    "MeshError",
    "ModelError",
    "NetworkError",
    "NoPeersAvailable",
    "Node",
    "NodeConfig",
    "OutputMismatch",
    "PeerList",
    "PeerUnavailable",
    "PeerView",
    "ProtocolError",
    "Receipt",
    "Replayed",
    "RetryPolicy",
    "RunResult",
    "Signed",
    "StreamChunk",
    "StreamDiverged",
    "StreamError",
    "StreamInterrupted",
    "Task",
    "TaskMismatch",
    "Tensor",
    "TokenStream",
    "TooLarge",
    "UnknownModel",
    "Values",
    "VerificationError",
    "__version__",
    "load_key_file",
    "run_node",
    "verify_receipt",
    "write_key_file",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
