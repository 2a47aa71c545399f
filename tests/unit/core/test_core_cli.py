"""The core's commands: mesh keygen, peer-id, verify, model-root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_samples import (
    OTHER,
    WORKER,
    sample_outputs,
    signed_receipt,
    signed_task,
)
from safetensors.numpy import save_file

from mesh.cli import main
from mesh.core import canonical
from mesh.core.model_root import format_root
from mesh.core.values import encode_values
from mesh.files.keyfile import load_key_file
from mesh.runtime.model_files import model_root_of_files

pytestmark = pytest.mark.unit


def test_keygen_writes_private_key_and_prints_peer_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", "--out", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == load_key_file(path).peer_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["peer-id", str(path)]) == 0
    assert capsys.readouterr().out.strip() == out


def test_keygen_refuses_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", "--out", str(path)]) == 0
    before = path.read_bytes()
    assert main(["keygen", "--out", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_group_readable_key_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", "--out", str(path)]) == 0
    path.chmod(0o640)
    assert main(["peer-id", str(path)]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_keygen_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    cmd = [sys.executable, "-m", "mesh", "keygen", "--out", str(path)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == load_key_file(path).peer_id
    assert first.stdout.startswith("12D3KooW")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.fixture
def receipt_files(tmp_path: Path) -> dict[str, Path]:
    task = signed_task()
    receipt = signed_receipt(task)
    files = {
        "receipt": tmp_path / "receipt.bin",
        "task": tmp_path / "task.bin",
        "output": tmp_path / "output.bin",
        "other_task": tmp_path / "other_task.bin",
        "other_output": tmp_path / "other_output.bin",
    }
    files["receipt"].write_bytes(receipt.envelope)
    files["task"].write_bytes(task.envelope)
    files["output"].write_bytes(encode_values(sample_outputs()))
    files["other_task"].write_bytes(signed_task(nonce=bytes(16)).envelope)
    files["other_output"].write_bytes(encode_values({"embedding": ["nope"]}))
    return files


def test_verify_ok(receipt_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    f = receipt_files
    code = main(
        ["verify", str(f["receipt"]), "--task", str(f["task"]), "--output", str(f["output"])]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    task = signed_task()
    assert line.startswith(f"OK receipt seq=0 worker={WORKER.peer_id} task={task.digest.hex()[:8]}")
    assert f"model={task.message.model_root.hex()[:8]}" in line
    assert main(["verify", str(f["receipt"])]) == 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--task", "other_task"], "task mismatch"),
        (["--output", "other_output"], "output hash mismatch"),
        (["--output", "task"], "malformed output"),
        (["--task", "receipt"], "malformed task"),
    ],
)
def test_verify_fails(
    receipt_files: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    argv = ["verify", str(receipt_files["receipt"]), args[0], str(receipt_files[args[1]])]
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith(f"FAIL {reason}")


def test_verify_bad_signature_and_malformed(
    receipt_files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    envelope = canonical.decode(receipt_files["receipt"].read_bytes())
    forged = tmp_path / "forged.bin"
    forged.write_bytes(canonical.encode(envelope | {"key": OTHER.public_key}))
    assert main(["verify", str(forged)]) == 1
    assert capsys.readouterr().err.startswith("FAIL bad signature")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x93\x01\x02")
    assert main(["verify", str(garbage)]) == 1
    assert capsys.readouterr().err.startswith("FAIL malformed")
    assert main(["verify", str(tmp_path / "absent.bin")]) == 1
    assert capsys.readouterr().err.startswith("FAIL cannot read")


def test_model_root_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tensors = {"a": np.ones((2, 2), np.float32), "b": np.arange(3, dtype=np.int64)}
    whole = tmp_path / "whole.safetensors"
    save_file(tensors, str(whole))
    shards = tmp_path / "shards"
    shards.mkdir()
    save_file({"a": tensors["a"]}, str(shards / "1.safetensors"))
    save_file({"b": tensors["b"]}, str(shards / "2.safetensors"))
    expected = format_root(model_root_of_files([whole]))
    assert main(["model-root", str(whole)]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["model-root", str(shards)]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["model-root", *map(str, sorted(shards.iterdir()))]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["model-root", str(tmp_path / "absent.safetensors")]) == 1


def test_inspect(receipt_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["inspect", str(receipt_files["receipt"])]) == 0
    shown = json.loads(capsys.readouterr().out)
    receipt = signed_receipt(signed_task())
    assert shown["type"] == "mesh/receipt/v1"
    assert shown["signer"] == WORKER.peer_id
    assert shown["digest"] == receipt.digest.hex()
    assert shown["fields"]["seq"] == 0
    assert main(["inspect", str(receipt_files["output"])]) == 1
    assert capsys.readouterr().err.startswith("FAIL")
