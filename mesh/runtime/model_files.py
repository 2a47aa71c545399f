"""Reading safetensors files for their model root, without torch.

The header rules and the Merkle root are the core's (:mod:`mesh.core.model_root`);
this module reads the files: it checks the header length against the file
size, then hashes each tensor's bytes through a read-only memory map, so a
multi-gigabyte checkpoint is never copied into memory. ``mesh model-root`` and
the tests use it; the runtime's weight loading computes the same root from the
loaded tensors.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from pathlib import Path

from mesh.core.model_root import (
    MAX_HEADER_BYTES,
    TensorLeaf,
    make_leaf,
    model_root_of_tensors,
    parse_safetensors_header,
    safetensors_entries,
)
from mesh.errors import ModelError

_HEADER_LENGTH = struct.Struct("<Q")


def read_safetensors_leaves(path: Path | str) -> list[TensorLeaf]:
    """The leaves of every tensor in one safetensors file (hashing its data).

    Raises:
        ModelError: unreadable, or not a valid safetensors file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size < _HEADER_LENGTH.size:
                raise ModelError(f"{path}: too short for a safetensors file")
            handle.seek(0)
            (header_len,) = _HEADER_LENGTH.unpack(handle.read(_HEADER_LENGTH.size))
            if header_len > MAX_HEADER_BYTES or _HEADER_LENGTH.size + header_len > size:
                raise ModelError(f"{path}: safetensors header length {header_len} is invalid")
            header = parse_safetensors_header(handle.read(header_len), str(path))
            data_start = _HEADER_LENGTH.size + header_len
            entries = safetensors_entries(header, size - data_start, str(path))
            if size == data_start:
                # mmap refuses empty ranges; only empty tensors can be here.
                return [make_leaf(n, d, s, b"") for n, d, s, _, _ in entries]
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return [
                        make_leaf(n, d, s, view[data_start + b : data_start + e])
                        for n, d, s, b, e in entries
                    ]
                finally:
                    view.release()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from exc


def safetensors_files(paths: Sequence[Path | str]) -> list[Path]:
    """Expand folders into the ``*.safetensors`` files they hold (sorted)."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(entry.glob("*.safetensors"))
            if not found:
                raise ModelError(f"{entry}: no .safetensors files in this folder")
            files.extend(found)
        else:
            files.append(entry)
    return files


def model_root_of_files(paths: Sequence[Path | str]) -> bytes:
    """The model root of the tensors in one or more safetensors files (or folders).

    The same tensors sharded differently give the same root.

    Raises:
        ModelError: a file is invalid, or a tensor name appears twice.
    """
    leaves: list[TensorLeaf] = []
    for path in safetensors_files(paths):
        leaves.extend(read_safetensors_leaves(path))
    return model_root_of_tensors(leaves)
