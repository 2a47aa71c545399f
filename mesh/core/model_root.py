"""Model identity: a Merkle root over a model's tensors, independent of files.

Leaves are the tensors sorted by name (UTF-8 bytes). Each leaf hash is::

    sha256(b"\\x00" + canonical.encode([name, dtype, shape_list, sha256(raw bytes)]))

with ``dtype`` the safetensors code ("F32", "F16", "BF16", "I64", ...). The tree
above the leaves is :mod:`mesh.core.merkle`'s (inner nodes ``sha256(b"\\x01" +
left + right)``, odd nodes promoted, the empty root ``sha256(b"\\x02")``).

File names, sharding, the order of a safetensors header and its ``__metadata__``
do not change the root; changing one weight, dtype, shape or name does. Per-tensor
proofs (:func:`inclusion_proof`) let a verifier check one tensor against a root.

The safetensors header is parsed here without torch (the file itself is read by
:mod:`mesh.runtime.model_files`): an 8-byte little-endian header length, a JSON
header ``{name: {"dtype", "shape", "data_offsets"}}`` and the data, with offsets
relative to the end of the header.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from mesh.core import canonical, merkle
from mesh.core.merkle import ProofStep
from mesh.errors import ModelError

# (name, safetensors dtype code, shape, sha256 of the raw little-endian bytes)
TensorLeaf = tuple[str, str, tuple[int, ...], bytes]
# (name, dtype code, shape, begin, end): one tensor of a safetensors header, offsets
# relative to the start of the data
TensorEntry = tuple[str, str, tuple[int, ...], int, int]

SAFETENSORS_DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
}
# The safetensors library refuses headers over 100 MB; so do we.
MAX_HEADER_BYTES = 100 * 1000 * 1000


def make_leaf(name: str, dtype: str, shape: Sequence[int], raw: bytes | memoryview) -> TensorLeaf:
    """The leaf of one tensor from its raw little-endian bytes."""
    return (name, dtype, tuple(shape), hashlib.sha256(raw).digest())


def leaf_hash(leaf: TensorLeaf) -> bytes:
    """The Merkle leaf hash of one tensor."""
    name, dtype, shape, data_sha256 = leaf
    return merkle.leaf(canonical.encode([name, dtype, list(shape), data_sha256]))


def _sorted_leaves(leaves: Iterable[TensorLeaf]) -> list[TensorLeaf]:
    ordered = sorted(leaves, key=lambda leaf: leaf[0].encode("utf-8"))
    for first, second in itertools.pairwise(ordered):
        if first[0] == second[0]:
            raise ModelError(f"tensor {first[0]!r} appears twice")
    return ordered


def model_root_of_tensors(leaves: Iterable[TensorLeaf]) -> bytes:
    """The model root of a set of tensors given as leaves (any order).

    Raises:
        ModelError: two tensors share a name.
    """
    return merkle.root([leaf_hash(leaf) for leaf in _sorted_leaves(leaves)])


def inclusion_proof(leaves: Iterable[TensorLeaf], name: str) -> list[ProofStep]:
    """The Merkle path proving the tensor ``name`` is in the root of ``leaves``.

    Raises:
        ModelError: no tensor has that name, or names repeat.
    """
    ordered = _sorted_leaves(leaves)
    index = next((i for i, leaf in enumerate(ordered) if leaf[0] == name), None)
    if index is None:
        raise ModelError(f"no tensor named {name!r}")
    return merkle.path([leaf_hash(leaf) for leaf in ordered], index)


def verify_inclusion(root: bytes, leaf: TensorLeaf, proof: Sequence[ProofStep]) -> None:
    """Check that ``leaf`` is in the tree of ``root`` along ``proof``.

    Raises:
        ModelError: the proof does not lead to ``root``.
    """
    if merkle.root_from_path(leaf_hash(leaf), proof) != root:
        raise ModelError(f"tensor {leaf[0]!r} is not in model {format_root(root)}")


def parse_safetensors_header(raw: bytes, path: str) -> dict[str, Any]:
    """The JSON header of a safetensors file. Raises ModelError when it is not a JSON object."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ModelError(f"{path}: duplicate key in safetensors header")
        return result

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: safetensors header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path}: safetensors header is not a JSON object")
    return header


def safetensors_entries(header: dict[str, Any], data_len: int, path: str) -> list[TensorEntry]:
    """The tensors a header describes, checked against ``data_len`` bytes of data.

    Raises:
        ModelError: a malformed entry, unknown dtype, or data outside the file.
    """
    entries: list[TensorEntry] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue  # free-form strings; not part of the model's identity
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelError(f"{path}: tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPE_SIZES:
            raise ModelError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_index(d) for d in shape):
            raise ModelError(f"{path}: tensor {name!r} has an invalid shape")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_index, offsets)):
            raise ModelError(f"{path}: tensor {name!r} has invalid data_offsets")
        begin, end = offsets
        if not begin <= end <= data_len:
            raise ModelError(f"{path}: tensor {name!r} lies outside the file")
        if end - begin != math.prod(shape) * SAFETENSORS_DTYPE_SIZES[dtype]:
            raise ModelError(f"{path}: tensor {name!r} data length does not fit its shape")
        entries.append((name, dtype, tuple(shape), begin, end))
    return entries


def _is_index(value: Any) -> bool:
    return type(value) is int and value >= 0


def format_root(root: bytes) -> str:
    """A root as lowercase hex."""
    return root.hex()


def parse_root(text: str) -> bytes:
    """A root from its hex form. Raises ModelError unless 64 hex digits."""
    try:
        root = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ModelError(f"model root {text!r} is not hex") from exc
    if len(root) != 32:
        raise ModelError(f"model root must be 32 bytes, got {len(root)}")
    return root
