"""Chat templates render exactly as transformers renders them, sandboxed, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from mesh.errors import InvalidInput, ModelError
from mesh.runtime.chat import ChatTemplate, load_chat_template, special_tokens
from mesh.runtime.zoo import builtin_path

pytestmark = pytest.mark.unit

# Llama-2's template: a system prompt folded into the first user turn, roles
# that must alternate (raise_exception), bos and eos tokens around each turn.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
# Whitespace control, namespace, loop controls, tojson with non-ASCII text, a date.
FEATURES = """
{%- set ns = namespace(users=0) -%}
{%- for m in messages %}
  {%- if m.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}
  {%- if m.content == 'STOP' %}{% break %}{% endif %}
  <{{ m.role }}{% if m.name is defined %} name={{ m.name }}{% endif %}>{{ m | tojson }}
{% endfor -%}
users={{ ns.users }} tools={{ tools is none }} today={{ strftime_now('%Y-%m-%d') }}
{%- if add_generation_prompt %}
<assistant>{% endif %}
"""
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Où est la gare ? 東京"},
        {"role": "assistant", "content": "  Tout droit.  "},
        {"role": "user", "content": "Merci", "name": "ann"},
    ],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "STOP"}],
]
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
NOW = datetime(2026, 1, 2, 3, 4, 5)


def _reference(template: str, messages: list[dict[str, Any]]) -> str:
    rendered, _ = render_jinja_template(
        [messages], chat_template=template, add_generation_prompt=True, **TOKENS
    )
    text: str = rendered[0]
    return text


@pytest.mark.parametrize("messages", CONVERSATIONS[:2])
def test_llama2_template_renders_as_transformers_does(messages: list[dict[str, Any]]) -> None:
    ours = ChatTemplate(LLAMA2, TOKENS).render(messages)
    assert ours == _reference(LLAMA2, messages)
    assert ours.startswith("<s>[INST] ")


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_template_features_render_as_transformers_does(messages: list[dict[str, Any]]) -> None:
    today = datetime.now().strftime("%Y-%m-%d")
    ours = ChatTemplate(FEATURES, TOKENS).render(messages)
    assert ours == _reference(FEATURES, messages)
    assert f"today={today}" in ours and "tools=True" in ours
    texts = [m["content"] for m in messages]
    if "Où est la gare ? 東京" in texts:
        assert "東京" in ours  # tojson keeps non-ASCII text, as transformers' does
    if "STOP" in texts:
        assert "STOP" not in ours and "users=2" in ours  # {% break %} left the loop


def test_now_is_a_parameter() -> None:
    ours = ChatTemplate("{{ strftime_now('%d %b %Y') }}", {}).render([], now=NOW)
    assert ours == "02 Jan 2026"


def test_raise_exception_is_invalid_input() -> None:
    template = ChatTemplate(LLAMA2, TOKENS)
    twice = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(InvalidInput, match="roles must alternate"):
        template.render(twice)


def test_template_errors_on_data_are_invalid_input() -> None:
    template = ChatTemplate("{{ messages[0]['content'] + 1 }}", {})
    with pytest.raises(InvalidInput, match="failed on the messages"):
        template.render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",  # Python internals
        "{{ messages.append(1) }}",  # mutating the caller's data
        "{% set ns = namespace(_x=1) %}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_escapes(source: str) -> None:
    with pytest.raises(InvalidInput):
        ChatTemplate(source, {}).render([{"role": "user", "content": "x"}])


def test_syntax_error_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="does not compile"):
        ChatTemplate("{% for m in messages %}", {})


def test_generation_tag_renders_its_body() -> None:
    source = (
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    )
    assert ChatTemplate(source, {}).render([{"role": "user", "content": "x"}]) == "[x]"


def test_tiny_gpt_ships_a_chatml_template() -> None:
    template = load_chat_template(builtin_path() / "tiny-gpt")
    assert template is not None
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    expected = (
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template.render(messages) == expected
    assert template.special_tokens["eos_token"] == "<|endoftext|>"


def test_folder_without_template_has_none(tmp_path: Path) -> None:
    assert load_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    assert load_chat_template(tmp_path) is None


def test_jinja_file_and_named_templates(tmp_path: Path) -> None:
    config = {
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}default"},
        ],
        "bos_token": {"content": "<s>", "lstrip": False},
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    template = load_chat_template(tmp_path)
    assert template is not None and template.render([]) == "<s>default"
    (tmp_path / "chat_template.jinja").write_text("from the file")
    template = load_chat_template(tmp_path)
    assert template is not None and template.render([]) == "from the file"


@pytest.mark.parametrize(
    "content",
    ["not json", "[1, 2]", '{"chat_template": 3}', '{"chat_template": [{"name": "x"}]}'],
)
def test_broken_configs_are_model_errors(tmp_path: Path, content: str) -> None:
    (tmp_path / "tokenizer_config.json").write_text(content)
    with pytest.raises(ModelError):
        load_chat_template(tmp_path)


def test_special_tokens_skip_nulls_and_unwrap_added_tokens() -> None:
    config = {"bos_token": None, "eos_token": {"content": "</s>"}, "pad_token": "<pad>", "x": 1}
    assert special_tokens(config) == {"eos_token": "</s>", "pad_token": "<pad>"}


def test_module_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mesh.runtime.chat import load_chat_template\n"
        "from mesh.runtime.zoo import builtin_path\n"
        "template = load_chat_template(builtin_path() / 'tiny-gpt')\n"
        "template.render([{'role': 'user', 'content': 'x'}])\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
