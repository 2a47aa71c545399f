"""How tiny-llama's tokenizer files were made (run it to write them again).

A byte-level BPE with no merges: the 256 bytes, in byte order, as ids 0..255
(spelt with GPT-2's byte-to-unicode alphabet, as Llama 3 and Qwen2 tokenizers
are), then three special tokens for a ChatML chat format:

    256 <|endoftext|>   BOS (the tokenizer prepends it) and document end
    257 <|im_start|>    opens a chat turn
    258 <|im_end|>      closes a turn: the end-of-text id generation stops at

``tokenizer_config.json`` names the BOS and EOS tokens and carries the chat
template (Jinja, ChatML). Like Llama 3's, the template starts with ``bos_token``,
so transformers' ``apply_chat_template`` (which encodes without special tokens)
gives BOS once; the mesh runtime encodes a prompt *with* the tokenizer's special
tokens (BOS prepended), so text rendered from the template must reach it
without its leading ``bos_token``.

    python models/tiny-llama/build_tokenizer.py [FOLDER]   # default: next to this file

tests/unit/runtime/test_runtime_llama.py checks that the committed files equal
what this script builds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

BOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIALS = (BOS, IM_START, IM_END)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build() -> Tokenizer:
    """The tokenizer: bytes as ids 0..255, then the special tokens from 256."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel spells byte b as the character GPT-2's bytes_to_unicode gives it; order
    # the vocabulary by byte value so id == byte, whatever order alphabet() returns.
    by_byte = sorted(alphabet, key=_byte_of)
    vocab = {char: i for i, char in enumerate(by_byte)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 256)]
    )
    return tokenizer


def tokenizer_config() -> dict[str, Any]:
    """The Hugging Face tokenizer_config.json: special tokens and the chat template."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": IM_END,
        "pad_token": BOS,
        "model_max_length": 512,
        "chat_template": CHAT_TEMPLATE,
    }


def _byte_of(char: str) -> int:
    """The byte GPT-2's byte-level alphabet spells with ``char``."""
    code = ord(char)
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def write(folder: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json into ``folder``."""
    build().save(str(folder / "tokenizer.json"), pretty=True)
    text = json.dumps(tokenizer_config(), indent=2, sort_keys=True) + "\n"
    (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
