"""A subcommand's options from a TOML file and the environment, under its flags.

:func:`enable` makes every option of an :mod:`argparse` subcommand settable three
more ways, with this precedence (later wins)::

    the parser's default  <  the config file  <  the environment  <  a command-line flag

- **The file** (``--config FILE``, or ``<PREFIX>CONFIG`` in the environment) is TOML
  with one top-level key per option: the option's ``dest``, with ``-`` or ``_``
  (``price-micro = 5`` or ``price_micro = 5``). A value is written as on the command
  line (a string, or a number for a numeric option); an option that can be repeated
  (``action="append"``, such as ``--listen``) takes an array, or one value; a flag
  without a value (``store_true``) takes ``true`` or ``false``. Relative paths (options
  whose ``type`` makes a :class:`~pathlib.Path`) are relative to the file's folder, and
  ``~`` is expanded. An unknown key is refused.
- **The environment**: ``<PREFIX><DEST IN CAPITALS>`` (``MESH_NODE_PRICE_MICRO=5``).
  An option that can be repeated takes a comma-separated list; a flag takes
  ``1/true/yes/on`` or ``0/false/no/off``; an empty variable counts as unset. An
  unknown ``<PREFIX>...`` variable is refused (a misspelt one would otherwise be
  ignored without a word).
- **A flag** on the command line replaces the value from the file or environment,
  a repeatable one included (``--listen X`` replaces the file's ``listen`` array).

Values from the file and the environment go through the option's own ``type=``,
``choices`` and ``action``, so a bad one is refused with the message the command line
gives (``argument --price-micro: must be 0 or more``), prefixed with where it came
from. The mapping is derived from the parser's actions, so options added later are
settable with no change here. Required options may come from any of the three.

Errors are :class:`~mesh.errors.ConfigError`; a required option missing everywhere
is reported by ``parser.error`` like argparse's own (exit status 2).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from mesh.errors import ConfigError

Command = Callable[[argparse.Namespace], int]

# Spellings of a flag's value in the environment (systemd's and Docker's usual ones).
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Actions that are no setting: they act and exit.
_NOT_SETTINGS = (argparse._HelpAction, argparse._VersionAction)


@dataclass(frozen=True)
class _Option:
    """One settable ``dest`` of the parser, as its (first) action defines it."""

    dest: str
    action: argparse.Action
    default: Any  # the parser's default, from before enable() suppressed it
    required: bool

    @property
    def key(self) -> str:
        return self.dest.replace("_", "-")

    @property
    def flag(self) -> str:
        return self.action.option_strings[-1]

    @property
    def repeatable(self) -> bool:
        return isinstance(self.action, argparse._AppendAction)  # append and extend

    @property
    def takes_list(self) -> bool:
        nargs = self.action.nargs
        return nargs in ("*", "+") or isinstance(nargs, int)

    @property
    def is_flag(self) -> bool:
        return self.action.nargs == 0


class Settings:
    """The settable options of one parser, and how to read them from a file and the environment.

    Made by :func:`enable`. ``resolve`` merges the layers for a parsed namespace.
    """

    def __init__(
        self, parser: argparse.ArgumentParser, *, env_prefix: str, config_dest: str
    ) -> None:
        self.parser = parser
        self.env_prefix = env_prefix
        self.config_dest = config_dest
        self.options: dict[str, _Option] = {}
        for action in parser._actions:
            if not action.option_strings or isinstance(action, _NOT_SETTINGS):
                continue  # positionals are not flags; --help and --version are no settings
            if action.dest == config_dest or action.dest in self.options:
                continue  # one entry per dest (e.g. --x/--no-x pairs); the first one types it
            self.options[action.dest] = _Option(
                action.dest, action, action.default, bool(action.required)
            )

    @property
    def config_env(self) -> str:
        """The environment variable naming the config file when no flag does."""
        return f"{self.env_prefix}{self.config_dest.upper()}"

    def env_name(self, dest: str) -> str:
        return f"{self.env_prefix}{dest.upper()}"

    def resolve(
        self,
        given: argparse.Namespace,
        *,
        environ: Mapping[str, str],
        check_required: bool = True,
    ) -> argparse.Namespace:
        """``given`` (the parsed flags) with every option filled in by precedence.

        Args:
            given: what the parser made of the command line; after :func:`enable` it
                holds only the options given as flags.
            environ: the environment to read ``<PREFIX>...`` variables from.
            check_required: report required options set nowhere (``parser.error``, which
                exits 2); with False they are left ``None``.

        Raises:
            ConfigError: the file cannot be read or parsed, has an unknown key or a bad
                value; an unknown or bad environment variable.
        """
        config = getattr(given, self.config_dest, None)
        if config is None and environ.get(self.config_env):
            config = Path(environ[self.config_env])
        from_file = self.read_file(Path(config)) if config is not None else {}
        from_env = self.read_environment(environ)
        merged = argparse.Namespace(**vars(given))
        setattr(merged, self.config_dest, config)
        missing: list[_Option] = []
        for dest, option in self.options.items():
            if hasattr(given, dest):
                continue  # a flag: it wins
            if dest in from_env:
                setattr(merged, dest, from_env[dest])
            elif dest in from_file:
                setattr(merged, dest, from_file[dest])
            else:
                if option.required and check_required:
                    missing.append(option)
                setattr(merged, dest, self._default(option))
        if missing:
            flags = ", ".join(o.flag for o in missing)
            names = ", ".join(self.env_name(o.dest) for o in missing)
            self.parser.error(
                f"the following arguments are required: {flags}"
                f" (as flags, in the --{self.config_dest.replace('_', '-')} file,"
                f" or as {names})"
            )
        return merged

    def read_file(self, path: Path) -> dict[str, Any]:
        """The options a TOML config file sets, by ``dest``, converted and checked.

        Raises:
            ConfigError: unreadable, not TOML, an unknown or repeated key, a bad value.
        """
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        base = path.parent
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, raw in data.items():
            dest = key.replace("-", "_")
            option = self.options.get(dest)
            if option is None:
                raise ConfigError(
                    f"config file {path}: unknown key {key!r}; known keys: {self._known_keys()}"
                )
            if dest in spelled:
                raise ConfigError(
                    f"config file {path}: {key!r} and {spelled[dest]!r} set the same option"
                )
            spelled[dest] = key
            where = f"config file {path}, key {key!r}"
            value = self._from_toml(option, raw, where=where, base=base)
            if value is not _UNSET:
                values[dest] = value
        return values

    def read_environment(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """The options ``<PREFIX>...`` variables set, by ``dest``, converted and checked.

        Raises:
            ConfigError: an unknown variable under the prefix, or a bad value.
        """
        by_name = {self.env_name(dest): option for dest, option in self.options.items()}
        values: dict[str, Any] = {}
        for name, text in environ.items():
            if not name.startswith(self.env_prefix) or name == self.config_env:
                continue
            option = by_name.get(name)
            if option is None:
                known = ", ".join(sorted([*by_name, self.config_env]))
                raise ConfigError(f"unknown environment variable {name}; known: {known}")
            if text == "":
                continue  # unset, as `-e NAME=` and `Environment=NAME=` usually mean
            value = self._from_env(option, text, where=f"environment variable {name}")
            if value is not _UNSET:
                values[option.dest] = value
        return values

    def _known_keys(self) -> str:
        return ", ".join(sorted(o.key for o in self.options.values()))

    def _default(self, option: _Option) -> Any:
        # argparse runs a string default through type= when the option is not given.
        if isinstance(option.default, str):
            return self.parser._get_value(option.action, option.default)
        return copy.copy(option.default)

    def _from_toml(self, option: _Option, raw: Any, *, where: str, base: Path) -> Any:
        if option.is_flag:
            return self._flag(option, raw, where=where)
        if option.repeatable:
            items = raw if isinstance(raw, list) else [raw]
            occurrences = [self._toml_strings(option, item, where=where) for item in items]
        else:
            occurrences = [self._toml_strings(option, raw, where=where)]
        return self._apply(option, occurrences, where=where, base=base)

    def _toml_strings(self, option: _Option, raw: Any, *, where: str) -> list[str]:
        """One occurrence's argument strings, as they would stand on a command line."""
        if option.takes_list:
            if not isinstance(raw, list):
                raise ConfigError(f"{where}: {option.flag} takes an array of values")
            return [_toml_scalar(item, option, where=where) for item in raw]
        return [_toml_scalar(raw, option, where=where)]

    def _from_env(self, option: _Option, text: str, *, where: str) -> Any:
        if option.is_flag:
            if isinstance(option.action, argparse._CountAction):
                try:
                    return self._flag(option, int(text), where=where)
                except ValueError:
                    raise ConfigError(f"{where}: {option.flag} takes a count") from None
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ConfigError(f"{where}: {option.flag} takes 1/true/yes/on or 0/false/no/off")
            return self._flag(option, word in _TRUE, where=where)
        if option.repeatable:
            items = [item.strip() for item in text.split(",") if item.strip()]
            occurrences = [item.split() if option.takes_list else [item] for item in items]
        elif option.takes_list:
            occurrences = [[item.strip() for item in text.split(",") if item.strip()]]
        else:
            occurrences = [[text]]
        return self._apply(option, occurrences, where=where, base=None)

    def _flag(self, option: _Option, raw: Any, *, where: str) -> Any:
        """A value-less option's value from ``true``/``false`` (or a count)."""
        action = option.action
        if isinstance(action, argparse._CountAction):
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise ConfigError(f"{where}: {option.flag} takes a count (0 or more)")
            return raw
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: {option.flag} takes true or false")
        if isinstance(action, argparse.BooleanOptionalAction) or isinstance(action.const, bool):
            return raw  # the value itself: store_true, store_false, --x/--no-x
        if not raw:
            return _UNSET  # store_const/append_const not chosen: as if absent
        scratch = argparse.Namespace(**{option.dest: copy.copy(option.default)})
        action(self.parser, scratch, [], option.flag)
        return getattr(scratch, option.dest)

    def _apply(
        self, option: _Option, occurrences: list[list[str]], *, where: str, base: Path | None
    ) -> Any:
        """Run the option's action once per occurrence, as the command line would."""
        action = option.action
        scratch = argparse.Namespace(**{option.dest: self._initial(option)})
        for strings in occurrences:
            _check_count(option, strings, where=where)
            try:
                values = self.parser._get_values(action, list(strings))
            except argparse.ArgumentError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            action(self.parser, scratch, _rebase(values, base), option.flag)
        return getattr(scratch, option.dest)

    def _initial(self, option: _Option) -> Any:
        # An append option given on the command line adds to its default; the same here.
        return self._default(option) if option.repeatable else None


class ConfiguredCommand:
    """A subcommand's ``func`` that first fills its options from file and environment."""

    def __init__(self, settings: Settings, func: Command) -> None:
        self.settings = settings
        self.func = func

    def __call__(self, args: argparse.Namespace) -> int:
        return self.func(self.settings.resolve(args, environ=os.environ))

    def resolve(
        self,
        args: argparse.Namespace,
        *,
        environ: Mapping[str, str],
        check_required: bool = True,
    ) -> argparse.Namespace:
        """See :meth:`Settings.resolve`."""
        return self.settings.resolve(args, environ=environ, check_required=check_required)


def enable(
    parser: argparse.ArgumentParser, *, env_prefix: str, config_dest: str = "config"
) -> Settings:
    """Let every option of ``parser`` come from a config file and the environment too.

    Call it after the last ``add_argument`` and ``set_defaults(func=...)``: it records
    each option's default and requiredness, then makes argparse leave options that are
    not given as flags out of the namespace (their defaults become ``SUPPRESS``, and
    no option is required on the command line any more), so flags can be told apart
    from defaults. The parser's ``func`` default, when there is one, is wrapped in a
    :class:`ConfiguredCommand` that resolves before it runs.

    Args:
        parser: the (sub)command's parser; it must have an option whose dest is
            ``config_dest`` (the config file's path).
        env_prefix: prefix of the environment variables, e.g. ``"MESH_NODE_"``.
        config_dest: dest of the config file option.

    Raises:
        ValueError: ``parser`` has no ``config_dest`` option.
    """
    if not any(a.dest == config_dest and a.option_strings for a in parser._actions):
        raise ValueError(f"the parser has no option with dest {config_dest!r}")
    settings = Settings(parser, env_prefix=env_prefix, config_dest=config_dest)
    for action in _setting_actions(parser, settings):
        if action.help and "%(default)" in action.help:
            action.help = action.help.replace("%(default)s", str(action.default))
        action.default = argparse.SUPPRESS
        action.required = False
    func = parser.get_default("func")
    if callable(func):
        parser.set_defaults(func=ConfiguredCommand(settings, func))
    return settings


def _setting_actions(
    parser: argparse.ArgumentParser, settings: Settings
) -> Iterable[argparse.Action]:
    return (a for a in parser._actions if a.dest in settings.options and a.option_strings)


class _Unset:
    """A file or environment entry that sets nothing (``store_const = false``)."""


_UNSET = _Unset()

# TOML values that can stand for one command-line argument (bool is excluded: an int).
_SCALARS = (str, int, float)


def _toml_scalar(raw: Any, option: _Option, *, where: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, _SCALARS):
        kind = "true/false" if isinstance(raw, bool) else _toml_kind(raw)
        raise ConfigError(
            f"{where}: {option.flag} takes a value as on the command line, not {kind}"
        )
    return str(raw)


def _toml_kind(raw: Any) -> str:
    if isinstance(raw, list):
        return "an array"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, datetime.date | datetime.time):
        return "a date or time"
    return type(raw).__name__


def _check_count(option: _Option, strings: list[str], *, where: str) -> None:
    """The argument count checks argparse does while matching the command line."""
    nargs = option.action.nargs
    if isinstance(nargs, int) and len(strings) != nargs:
        raise ConfigError(f"{where}: argument {option.flag}: expected {nargs} arguments")
    if nargs == "+" and not strings:
        raise ConfigError(f"{where}: argument {option.flag}: expected at least one argument")


def _rebase(value: Any, base: Path | None) -> Any:
    """Expand ``~`` in path values; make relative ones relative to ``base`` (the file's folder)."""
    if isinstance(value, list):
        return [_rebase(item, base) for item in value]
    if isinstance(value, PurePath):
        path = Path(value).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        return type(value)(path)
    return value
