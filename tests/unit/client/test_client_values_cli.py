"""JSON values, model name resolution, and the ``mesh run`` / ``mesh peers`` arguments."""

from __future__ import annotations

import importlib.resources
import io
import json
import struct
from pathlib import Path

import pytest

from mesh.cli import build_parser
from mesh.cli.client import build_inputs, parse_params, print_peers
from mesh.client.async_client import PeerView
from mesh.client.jsonvalues import (
    tensor_from_nested,
    tensor_to_nested,
    values_from_json,
    values_to_json,
)
from mesh.client.models import manifest_roots, resolve_model, text_input_name
from mesh.core.identity import Identity
from mesh.core.messages import CapacityRecord
from mesh.core.tensors import Tensor
from mesh.errors import ConfigError, MalformedMessage, ModelError

pytestmark = pytest.mark.unit


def test_nested_lists_round_trip() -> None:
    tensor = tensor_from_nested([[1.5, 2.0], [3.0, -4.25]])
    assert tensor.dtype == "float32" and tensor.shape == (2, 2)
    assert struct.unpack("<4f", tensor.data) == (1.5, 2.0, 3.0, -4.25)
    assert tensor_to_nested(tensor) == [[1.5, 2.0], [3.0, -4.25]]
    ints = tensor_from_nested([1, 2, 3], dtype="int64")
    assert tensor_to_nested(ints) == [1, 2, 3]
    bf = tensor_from_nested([1.0, -2.0], dtype="bfloat16")
    assert tensor_to_nested(bf) == [1.0, -2.0]


@pytest.mark.parametrize(
    ("data", "dtype"),
    [([[1.0], [2.0, 3.0]], "float32"), ([1.5], "int64"), (["a"], "float32"), ([1], "complex")],
)
def test_bad_nested_lists(data: object, dtype: str) -> None:
    with pytest.raises(MalformedMessage):
        tensor_from_nested(data, dtype=dtype)


def test_values_json_forms() -> None:
    values = values_from_json(
        {"texts": ["a", "b"], "x": [[1, 2]], "ids": {"dtype": "int64", "data": [5]}}
    )
    assert values["texts"] == ["a", "b"]
    assert isinstance(values["x"], Tensor) and values["x"].dtype == "float32"
    assert isinstance(values["ids"], Tensor) and values["ids"].dtype == "int64"
    doc = values_to_json(values)
    assert doc["ids"] == {"dtype": "int64", "shape": [1], "data": [5]}
    assert json.loads(json.dumps(doc)) == doc


def _zoo(tmp_path: Path) -> Path:
    """An operator zoo: "toy" (a copy of tiny-gpt with another root), "free" (no root)."""
    builtin = Path(str(importlib.resources.files("mesh._zoo")))
    text = (builtin / "tiny-gpt" / "manifest.toml").read_text()
    lines = text.splitlines()
    for name, root in (("toy", "ab" * 32), ("free", None)):
        entry = tmp_path / name
        entry.mkdir()
        out = []
        for line in lines:
            if line.startswith("name ="):
                line = f'name = "{name}"'
            elif line.startswith("model_root ="):
                if root is None:
                    continue
                line = f'model_root = "{root}"'
            elif line.startswith("file =") and "model.py" in line:
                line = 'file = "builtin:gpt2/model.py"'
            out.append(line)
        (entry / "manifest.toml").write_text("\n".join(out) + "\n")
    return tmp_path


def test_resolve_model_names_and_roots(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path)
    assert resolve_model("toy", zoo_dirs=[zoo]) == bytes.fromhex("ab" * 32)
    assert resolve_model("cd" * 32) == bytes.fromhex("cd" * 32)
    assert resolve_model(b"\x01" * 32) == b"\x01" * 32
    with pytest.raises(ModelError, match="pins no model_root"):
        resolve_model("free", zoo_dirs=[zoo])
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("nope", zoo_dirs=[zoo])
    assert text_input_name("toy", zoo_dirs=[zoo]) == "prompt"
    assert text_input_name("unknown") == "texts"


def test_builtin_zoo_names_resolve_without_torch() -> None:
    roots = manifest_roots()
    if "tiny-mlp" not in roots:
        pytest.skip("built-in zoo not present")
    assert resolve_model("tiny-mlp") == roots["tiny-mlp"]


def test_run_arguments() -> None:
    args = build_parser().parse_args(
        ["run", "tiny-mlp", "--bootstrap", "b.txt", "--input", '{"x": [[1]]}', "--json",
         "--receipt-out", "r.bin", "--param", "seed=3", "--timeout", "5"]
    )  # fmt: skip
    assert (args.model, args.bootstrap, args.json, args.timeout) == ("tiny-mlp", "b.txt", True, 5)
    assert args.receipt_out == Path("r.bin")
    assert parse_params(args.param) == {"seed": 3}
    assert isinstance(build_inputs(args)["x"], Tensor)


def test_run_text_arguments_use_the_models_text_input(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path)
    args = build_parser().parse_args(
        ["run", "toy", "--bootstrap", "b", "--text", "hello", "world", "--zoo", str(zoo)]
    )
    assert build_inputs(args) == {"prompt": ["hello", "world"]}


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "m", "--bootstrap", "b"],  # no input
        ["run", "m", "--bootstrap", "b", "--input", "{}", "--text", "x"],  # both
        ["run", "m", "--input", "{}"],  # no bootstrap
        ["peers"],
    ],
)
def test_run_and_peers_argument_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


@pytest.mark.parametrize("items", [["seed"], ["seed=x"], ["=3"]])
def test_bad_params(items: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_params(items)


def test_bad_input_json_is_a_config_error() -> None:
    args = build_parser().parse_args(["run", "m", "--bootstrap", "b", "--input", "{nope"])
    with pytest.raises(ConfigError):
        build_inputs(args)


def test_peers_table_and_json() -> None:
    ident = Identity.from_seed(b"\x03" * 32)
    record = CapacityRecord(
        peer=ident.public_key, addrs=(), models=(b"\x00" * 32,), model_names=("tiny-mlp",),
        device="cpu", memory_free_mb=1, queue_depth=2, queue_capacity=8, throughput_milli=1500,
        price_micro=0, region="eu", created_ms=0, expires_ms=1,
    )  # fmt: skip
    view = PeerView(ident.peer_id, record, 1.25)
    out = io.StringIO()
    print_peers([view], as_json=False, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[0] == "PEER" and "tiny-mlp" in lines[1] and "2/8" in lines[1]
    assert "1.5" in lines[1] and "eu" in lines[1]
    out = io.StringIO()
    print_peers([view], as_json=True, out=out)
    assert json.loads(out.getvalue())[0]["peer_id"] == ident.peer_id
