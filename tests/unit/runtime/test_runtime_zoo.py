"""The zoo: manifests, identity checked at load, architectures loaded by path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.core.model_root import format_root
from mesh.errors import ConfigError, ModelError
from mesh.runtime.registry import load_model
from mesh.runtime.weights import build_model
from mesh.runtime.zoo import Zoo, builtin_path

pytestmark = pytest.mark.unit


def test_builtin_zoo_lists_its_entries() -> None:
    zoo = Zoo.builtin()
    assert zoo.names() == ["gpt2", "llama", "minilm-l6", "tiny-gpt", "tiny-llama", "tiny-mlp"]
    assert zoo.manifest("tiny-mlp").kind == "classify"
    assert zoo.manifest("tiny-gpt").kind == "generate"
    assert zoo.manifest("gpt2").model_root is None  # no weights ship
    assert zoo.manifest("llama").model_root is None
    assert zoo.manifest("tiny-llama").kind == "generate"


def test_unknown_name_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="no model 'nope'"):
        Zoo.builtin().manifest("nope")


def test_missing_zoo_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Zoo(tmp_path / "absent")


@pytest.mark.parametrize("name", ["tiny-mlp", "tiny-gpt", "tiny-llama"])
def test_seeded_weights_give_the_pinned_root(name: str) -> None:
    manifest = Zoo.builtin().manifest(name)
    _, root = build_model(manifest, None)
    assert manifest.model_root is not None
    assert root == manifest.model_root


def test_architectures_load_without_a_models_package() -> None:
    load_model(Zoo.builtin().manifest("tiny-mlp"), device="cpu")
    assert "models" not in sys.modules


def _copy_entry(tmp_path: Path, name: str) -> Path:
    target = tmp_path / "zoo" / name
    shutil.copytree(builtin_path() / name, target)
    return target


def test_root_mismatch_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    entry = _copy_entry(tmp_path, "tiny-mlp")
    text = (entry / "manifest.toml").read_text()
    (entry / "manifest.toml").write_text(text.replace("seed = 20240501", "seed = 7"))
    manifest = Zoo(tmp_path / "zoo").manifest("tiny-mlp")
    assert manifest.model_root is not None
    with pytest.raises(ModelError) as info:
        load_model(manifest, device="cpu")
    message = str(info.value)
    assert message.startswith("model_root mismatch for tiny-mlp: manifest says ")
    assert format_root(manifest.model_root) in message
    assert "weights give " in message


def test_operator_zoo_may_use_a_builtin_architecture(tmp_path: Path) -> None:
    entry = _copy_entry(tmp_path, "tiny-gpt")
    text = (entry / "manifest.toml").read_text()
    (entry / "manifest.toml").write_text(
        text.replace('file = "../gpt2/model.py"', 'file = "builtin:gpt2/model.py"')
    )
    model = load_model(Zoo(tmp_path / "zoo").manifest("tiny-gpt"), device="cpu")
    assert model.model_root == Zoo.builtin().manifest("tiny-gpt").model_root


def test_gpt2_without_weights_says_what_it_needs() -> None:
    with pytest.raises(ModelError, match="weights folder"):
        load_model(Zoo.builtin().manifest("gpt2"), device="cpu")


def test_bad_manifest_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.toml").write_text('name = "broken"\nkind = "dance"\n')
    with pytest.raises(ModelError, match="bad manifest"):
        Zoo(tmp_path)


def test_bad_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_model(Zoo.builtin().manifest("tiny-mlp"), device="tpu")


def test_reading_the_zoo_does_not_import_torch() -> None:
    code = (
        "import sys; from mesh.runtime.zoo import Zoo; Zoo.builtin().names(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
