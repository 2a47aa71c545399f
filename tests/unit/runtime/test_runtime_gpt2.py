"""The GPT-2 architecture against transformers' GPT2LMHeadModel on random weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mesh.errors import InvalidInput
from mesh.runtime.convert import from_torch
from mesh.runtime.model_files import model_root_of_files
from mesh.runtime.registry import LoadedModel, load_model
from mesh.runtime.sampling import Sampler, SamplingParams
from mesh.runtime.zoo import Zoo

pytestmark = pytest.mark.unit

transformers = pytest.importorskip("transformers")

CONFIG = {"vocab_size": 300, "n_positions": 64, "n_embd": 48, "n_layer": 3, "n_head": 4}


def _reference(tmp_path: Path, *, prefixed: bool) -> tuple[object, LoadedModel]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(**CONFIG, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    reference = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # make biases and norms non-trivial so they are really checked
        for name, p in reference.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path / "gpt2"
    if prefixed:  # the save_pretrained layout: "transformer." names, tied head dropped
        reference.save_pretrained(folder, safe_serialization=True)
    else:  # OpenAI's layout: bare names, as in the original model.safetensors
        from safetensors.torch import save_file

        state = {
            k.removeprefix("transformer."): v.contiguous()
            for k, v in reference.state_dict().items()
            if k != "lm_head.weight"
        }
        folder.mkdir()
        save_file(state, str(folder / "model.safetensors"))
    manifest = replace(Zoo.builtin().manifest("gpt2"), config=dict(CONFIG))
    return reference, load_model(manifest, device="cpu", weights_dir=tmp_path)


@pytest.mark.parametrize("prefixed", [False, True])
def test_logits_match_transformers(tmp_path: Path, prefixed: bool) -> None:
    reference, model = _reference(tmp_path, prefixed=prefixed)
    ids = torch.randint(
        0, CONFIG["vocab_size"], (1, 40), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        expected = reference(ids).logits[0]  # type: ignore[operator]
    _, ours = model.generator().prefill(ids[0].tolist())
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert model.model_root == model_root_of_files([tmp_path / "gpt2" / "model.safetensors"])


def test_greedy_generation_matches_transformers(tmp_path: Path) -> None:
    reference, model = _reference(tmp_path, prefixed=False)
    prompt = [5, 17, 230, 42]
    tokens, _ = model.generator().generate([prompt], [Sampler(SamplingParams(max_tokens=12))])
    with torch.no_grad():
        out = reference.generate(  # type: ignore[attr-defined]
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=0
        )
    assert tokens[0] == out[0, len(prompt) :].tolist()


def test_weights_option_may_name_the_folder_or_the_file(tmp_path: Path) -> None:
    _, model = _reference(tmp_path, prefixed=False)
    manifest = model.manifest
    for given in (tmp_path / "gpt2", tmp_path / "gpt2" / "model.safetensors"):
        assert load_model(manifest, device="cpu", weights_dir=given).model_root == model.model_root


def test_without_a_tokenizer_prompts_must_be_ids(tmp_path: Path) -> None:
    _, model = _reference(tmp_path, prefixed=False)
    with pytest.raises(InvalidInput, match="send prompt_ids"):
        model.validate({"prompt": ["hello"]}, {"max_tokens": 4})
    ids = from_torch(torch.tensor([1, 2, 3]))
    model.validate({"prompt_ids": ids}, {"max_tokens": 4})
    with pytest.raises(InvalidInput, match="positions"):
        model.validate({"prompt_ids": ids}, {"max_tokens": 62})
