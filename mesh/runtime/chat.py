"""Chat templates: a conversation rendered to one prompt, the way Hugging Face does it.

A model's chat template is the ``chat_template`` of its ``tokenizer_config.json``
(a Jinja template; newer checkpoints may ship it as ``chat_template.jinja``
instead, or as a list of named templates of which ``default`` is used). It is
rendered exactly as ``transformers``' ``apply_chat_template`` renders it: an
immutable *sandboxed* Jinja environment with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` filter that
keeps non-ASCII text, and the globals ``raise_exception`` and ``strftime_now``;
the variables are ``messages``, ``add_generation_prompt`` and the special
tokens (``bos_token``, ``eos_token``, ...). The sandbox matters: a template is
data shipped with a model, and must not reach Python internals.

No torch here (only jinja2 and the standard library): the gateway renders
prompts in a process that never imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mesh.errors import InvalidInput, ModelError

CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
# Special tokens a template may name, as transformers' special_tokens_map passes them.
SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# A tokenizer_config.json of a real model is a few KiB to a few hundred (long
# added-token tables); anything far bigger is not one.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class ChatTemplate:
    """A compiled chat template and the special tokens it is rendered with.

    Args:
        source: the template text.
        special_tokens: ``bos_token``, ``eos_token``, ... as strings.

    Raises:
        ModelError: the template does not compile.
    """

    def __init__(self, source: str, special_tokens: Mapping[str, str]) -> None:
        self.source = source
        self.special_tokens = dict(special_tokens)
        try:
            self._compiled = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise ModelError(f"chat template does not compile: {exc}") from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        now: datetime | None = None,
    ) -> str:
        """The prompt for ``messages`` (dicts with ``role`` and ``content``).

        Args:
            messages: the conversation, oldest first.
            add_generation_prompt: end with the template's opening of an assistant turn.
            now: what ``strftime_now`` reads (some templates print today's date);
                the local time when None, as transformers does.

        Raises:
            InvalidInput: the template refused the conversation (its
                ``raise_exception``, e.g. roles that do not alternate) or failed on it.
        """

        def strftime_now(format: str) -> str:
            return (now or datetime.now()).strftime(format)

        # As transformers: keys whose value is None are dropped (templates test
        # for a missing key, and would print "None"), and tools and documents
        # are passed as None, so `tools is defined` reads as it does there.
        plain = [{k: v for k, v in m.items() if v is not None} for m in messages]
        try:
            return self._compiled.render(
                messages=plain,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                strftime_now=strftime_now,
                **self.special_tokens,
            )
        except jinja2.TemplateError as exc:
            raise InvalidInput(f"the chat template refused the messages: {exc}") from exc
        except (TypeError, ValueError, LookupError, AttributeError) as exc:
            # Template code meeting data it did not expect (``content + "..."``
            # on a null content): the conversation does not fit this template.
            raise InvalidInput(f"the chat template failed on the messages: {exc!r}") from exc


def load_chat_template(folder: Path) -> ChatTemplate | None:
    """The chat template kept in ``folder``, or None when it has none.

    Reads ``tokenizer_config.json`` (its ``chat_template`` and special tokens);
    a ``chat_template.jinja`` beside it takes the template's place, as in
    transformers.

    Raises:
        ModelError: a config that cannot be read or parsed, a malformed
            ``chat_template`` field, or a template that does not compile.
    """
    config = _read_config(folder / CONFIG_FILE)
    source: Any = config.get("chat_template")
    jinja_file = folder / TEMPLATE_FILE
    if jinja_file.is_file():
        try:
            source = jinja_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read {jinja_file}: {exc}") from exc
    if source is None:
        return None
    return ChatTemplate(_pick_template(source, folder), special_tokens(config))


def special_tokens(config: Mapping[str, Any]) -> dict[str, str]:
    """The special tokens of a tokenizer config as strings.

    A token may be stored as a string or as a serialised ``AddedToken``
    (``{"content": "<s>", ...}``); absent or null tokens are left out.
    """
    found: dict[str, str] = {}
    for name in SPECIAL_TOKENS:
        value = config.get(name)
        if isinstance(value, Mapping):
            value = value.get("content")
        if isinstance(value, str):
            found[name] = value
    return found


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelError(f"{path} is over {MAX_CONFIG_BYTES} bytes")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"{path} is not a JSON object")
    return raw


def _pick_template(source: Any, folder: Path) -> str:
    if isinstance(source, str):
        return source
    # transformers' list form: [{"name": "default", "template": "..."}, ...]
    if isinstance(source, list):
        for item in source:
            if isinstance(item, dict) and item.get("name") == "default":
                template = item.get("template")
                if isinstance(template, str):
                    return template
        raise ModelError(f"the chat templates in {folder} have no 'default' one")
    raise ModelError(f"chat_template in {folder} is neither a string nor a list of templates")


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers overrides Jinja's tojson, which escapes HTML characters and
    # non-ASCII text, so that prompts carry JSON as a model saw it in training.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _TemplateDict:
    """``dict(...)`` for templates without handing them the ``dict`` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """Jinja's ``namespace`` refusing underscore names (a known way out of sandboxes)."""

    # No named self: Jinja's own Namespace takes it from *args, so namespace(self=1) works.
    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        for name in dict(*rest, **kwargs):
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, *rest, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore attributes on a namespace: {name!r}"
            )


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` renders its body as it is.

    transformers uses the tag to mark assistant tokens for training; some
    templates carry it, and they must compile here too.
    """

    tags = {"generation"}  # noqa: RUF012 (Jinja reads a class attribute)

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


def _environment() -> ImmutableSandboxedEnvironment:
    # The environment transformers builds (chat_template_utils.py).
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env
