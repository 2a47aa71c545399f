"""model_root: independent of file names, sharding and header order; sensitive to weights."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mesh.core import canonical
from mesh.core.model_root import (
    format_root,
    inclusion_proof,
    leaf_hash,
    make_leaf,
    model_root_of_tensors,
    parse_root,
    verify_inclusion,
)
from mesh.errors import ModelError
from mesh.runtime.model_files import model_root_of_files, read_safetensors_leaves

pytestmark = pytest.mark.unit


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "encoder.layer.0.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "encoder.layer.0.bias": rng.standard_normal(4).astype(np.float32),
        "embeddings.word": rng.standard_normal((5, 2)).astype(np.float16),
        "pooler.ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "zeta.empty": np.zeros((0, 3), dtype=np.float32),
    }


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(_tensors(), str(path), metadata={"format": "pt"})
    return path


def _rewrite(src: Path, dst: Path, *, reverse_keys: bool, reverse_data: bool) -> None:
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    names = [k for k in header if k != "__metadata__"]
    order = list(reversed(names)) if reverse_data else names
    blobs, offset, new = [], 0, {}
    for name in order:
        begin, end = header[name]["data_offsets"]
        blobs.append(data[begin:end])
        new[name] = dict(header[name], data_offsets=[offset, offset + end - begin])
        offset += end - begin
    keys = list(reversed(names)) if reverse_keys else names
    text = json.dumps({k: new[k] for k in keys}).encode()
    dst.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_leaves_match_numpy_bytes(model_file: Path) -> None:
    leaves = {leaf[0]: leaf for leaf in read_safetensors_leaves(model_file)}
    dtypes = {"float32": "F32", "float16": "F16", "int64": "I64"}
    for name, array in _tensors().items():
        expected = make_leaf(name, dtypes[str(array.dtype)], array.shape, array.tobytes())
        assert leaves[name] == expected


def test_root_matches_definition() -> None:
    a = ("a", "F32", (1,), hashlib.sha256(b"\0\0\0\0").digest())
    b = ("b", "I8", (2,), hashlib.sha256(b"\1\2").digest())
    c = ("c", "U8", (), hashlib.sha256(b"\3").digest())
    la, lb, lc = (
        hashlib.sha256(b"\x00" + canonical.encode([n, d, list(s), h])).digest()
        for n, d, s, h in (a, b, c)
    )
    ab = hashlib.sha256(b"\x01" + la + lb).digest()
    # Three leaves: (a, b) pair up, c is promoted, then the root joins them.
    assert model_root_of_tensors([c, a, b]) == hashlib.sha256(b"\x01" + ab + lc).digest()
    assert model_root_of_tensors([a]) == la == leaf_hash(a)
    assert model_root_of_tensors([]) == hashlib.sha256(b"\x02").digest()


def test_rename_does_not_change_root(model_file: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "other-name.safetensors"
    renamed.write_bytes(model_file.read_bytes())
    assert model_root_of_files([renamed]) == model_root_of_files([model_file])


def test_resharding_does_not_change_root(model_file: Path, tmp_path: Path) -> None:
    tensors = _tensors()
    names = sorted(tensors)
    shards = tmp_path / "shards"
    shards.mkdir()
    save_file({n: tensors[n] for n in names[::2]}, str(shards / "part-1.safetensors"))
    save_file({n: tensors[n] for n in names[1::2]}, str(shards / "part-2.safetensors"))
    root = model_root_of_files([model_file])
    files = sorted(shards.iterdir())
    assert model_root_of_files(files) == root
    assert model_root_of_files(list(reversed(files))) == root
    assert model_root_of_files([shards]) == root


@pytest.mark.parametrize(("keys", "data"), [(True, False), (False, True), (True, True)])
def test_header_and_data_order_do_not_change_root(
    model_file: Path, tmp_path: Path, keys: bool, data: bool
) -> None:
    other = tmp_path / "reordered.safetensors"
    _rewrite(model_file, other, reverse_keys=keys, reverse_data=data)
    assert other.read_bytes() != model_file.read_bytes()
    assert model_root_of_files([other]) == model_root_of_files([model_file])


def test_one_changed_weight_changes_root(model_file: Path, tmp_path: Path) -> None:
    tensors = _tensors()
    tensors["encoder.layer.0.weight"][2, 1] += np.float32(1e-3)
    changed = tmp_path / "changed.safetensors"
    save_file(tensors, str(changed))
    assert model_root_of_files([changed]) != model_root_of_files([model_file])


def test_dtype_shape_and_name_are_part_of_root() -> None:
    leaf = make_leaf("w", "F32", (2, 2), bytes(16))
    root = model_root_of_tensors([leaf])
    assert model_root_of_tensors([make_leaf("w", "I32", (2, 2), bytes(16))]) != root
    assert model_root_of_tensors([make_leaf("w", "F32", (4,), bytes(16))]) != root
    assert model_root_of_tensors([make_leaf("v", "F32", (2, 2), bytes(16))]) != root


def test_duplicate_tensor_across_shards(model_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(model_file.read_bytes())
    with pytest.raises(ModelError, match="twice"):
        model_root_of_files([model_file, copy])


@pytest.mark.parametrize("name", sorted(_tensors()))
def test_inclusion_proofs(model_file: Path, name: str) -> None:
    leaves = read_safetensors_leaves(model_file)
    root = model_root_of_tensors(leaves)
    leaf = next(x for x in leaves if x[0] == name)
    proof = inclusion_proof(leaves, name)
    verify_inclusion(root, leaf, proof)
    forged = (leaf[0], leaf[1], leaf[2], bytes(32))
    with pytest.raises(ModelError):
        verify_inclusion(root, forged, proof)


def test_inclusion_proof_unknown_name() -> None:
    with pytest.raises(ModelError):
        inclusion_proof([make_leaf("a", "U8", (), b"x")], "b")


def test_root_text_round_trip() -> None:
    root = bytes(range(32))
    assert parse_root(format_root(root)) == root
    assert format_root(root) == root.hex()
    for bad in ("zz", "00" * 31, ""):
        with pytest.raises(ModelError):
            parse_root(bad)


def _file(
    tmp_path: Path, header: object, data: bytes = b"", raw_header: bytes | None = None
) -> Path:
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    ("header", "data"),
    [
        ([], b""),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"1234"),
        ({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [1]}}, b"1234"),
        ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"1234"),
        ({"a": 5}, b""),
    ],
)
def test_malformed_safetensors(tmp_path: Path, header: object, data: bytes) -> None:
    with pytest.raises(ModelError):
        read_safetensors_leaves(_file(tmp_path, header, data))


def test_malformed_safetensors_framing(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        read_safetensors_leaves(_file(tmp_path, None, raw_header=b"{not json"))
    with pytest.raises(ModelError, match="duplicate"):
        dup = b'{"a": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}, "a": {}}'
        read_safetensors_leaves(_file(tmp_path, None, b"x", raw_header=dup))
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x00")
    with pytest.raises(ModelError):
        read_safetensors_leaves(short)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ModelError):
        read_safetensors_leaves(huge)
    with pytest.raises(ModelError):
        read_safetensors_leaves(tmp_path / "absent.safetensors")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ModelError):
        model_root_of_files([empty_dir])


def test_header_only_file(tmp_path: Path) -> None:
    path = _file(tmp_path, {"__metadata__": {"a": "b"}})
    assert read_safetensors_leaves(path) == []
    assert model_root_of_files([path]) == model_root_of_tensors([])
