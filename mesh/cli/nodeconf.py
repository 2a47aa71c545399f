"""A subcommand's options from a TOML file and the environment, under its flags.

:func:`enable` makes every option of an :mod:`argparse` (sub)command settable two
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

It works inside ``parse_args``: the namespace comes back complete, exactly as if the
file's and environment's values had been flags, so code that parses and reads the
namespace needs no change. Values from the file and the environment go through the
option's own ``type=``, ``choices`` and ``action``, so a bad one gets the message
the command line gives (``argument --price-micro: must be 0 or more``), prefixed
with where it came from, and the same exit (status 2, ``<prog>: error: ...``).
Required options may come from any source; set nowhere, argparse reports them as
usual. The mapping is read from the parser's actions at each parse, so options
added later are settable with no change here.

:class:`Settings` reads the file and the environment on their own (raising
:class:`~mesh.errors.ConfigError`), for callers that need to know what is set where.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from mesh.errors import ConfigError

# Spellings of a flag's value in the environment (systemd's and Docker's usual ones).
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Actions that are no setting: they act and exit.
_NOT_SETTINGS = (argparse._HelpAction, argparse._VersionAction)

# argparse's parse_known_args (overloaded in typeshed, hence the loose signature).
ParseKnownArgs = Callable[..., tuple[argparse.Namespace, list[str]]]


@dataclass(frozen=True)
class _Option:
    """One settable ``dest`` of the parser, as its (first) action defines it."""

    dest: str
    action: argparse.Action

    @property
    def key(self) -> str:
        return self.dest.replace("_", "-")

    @property
    def flag(self) -> str:
        return self.action.option_strings[-1]

    @property
    def default(self) -> Any:
        return self.action.default

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

    Made by :func:`enable`; :func:`settings_of` finds it again.
    """

    def __init__(
        self,
        parser: argparse.ArgumentParser,
        *,
        env_prefix: str,
        config_dest: str,
        environ: Mapping[str, str] | None,
        parse_known_args: ParseKnownArgs,
    ) -> None:
        self.parser = parser
        self.env_prefix = env_prefix
        self.config_dest = config_dest
        self._environ = environ
        self._parse_known_args = parse_known_args  # the parser's own

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment read at each parse (the process's unless one was given)."""
        return os.environ if self._environ is None else self._environ

    @property
    def options(self) -> dict[str, _Option]:
        """The settable options by ``dest``, from the parser's actions as they are now."""
        options: dict[str, _Option] = {}
        for action in self.parser._actions:
            if not action.option_strings or isinstance(action, _NOT_SETTINGS):
                continue  # positionals are not flags; --help and --version are no settings
            if action.dest == self.config_dest or action.dest in options:
                continue  # one entry per dest (e.g. --x/--no-x pairs); the first one types it
            options[action.dest] = _Option(action.dest, action)
        return options

    @property
    def config_env(self) -> str:
        """The environment variable naming the config file when no flag does."""
        return self.env_name(self.config_dest)

    def env_name(self, dest: str) -> str:
        return f"{self.env_prefix}{dest.upper()}"

    def config_path(self, flagged: Path | str | None) -> Path | None:
        """The config file: the flag's, else the environment's, else none."""
        if flagged is not None:
            return Path(flagged)
        named = self.environ.get(self.config_env)
        return Path(named) if named else None

    def flagged(self, args: Sequence[str] | None) -> argparse.Namespace:
        """Only what the command line ``args`` gives: options not given are absent.

        Parses with every option's default suppressed and none required (argparse
        errors in ``args`` itself exit as usual).
        """
        options = self.options.values()
        with _relaxed(self.parser, {o.dest for o in options}, suppress_defaults=True):
            namespace, _ = self._parse_known_args(args, None)
        return namespace

    def layers(self, args: Sequence[str] | None) -> tuple[set[str], dict[str, Any], Path | None]:
        """What sets what for the command line ``args``: flags, the environment, the file.

        Returns:
            The dests given as flags; the values by dest from the environment, else the
            file, for options not given as flags; the config file (or None).

        Raises:
            ConfigError: the file cannot be read or parsed, has an unknown key or a bad
                value; an unknown or bad environment variable.
        """
        flags = self.flagged(args)
        config = self.config_path(getattr(flags, self.config_dest, None))
        values = self.read_file(config) if config is not None else {}
        values.update(self.read_environment())
        given = set(vars(flags)) & set(self.options)
        return given, {d: v for d, v in values.items() if d not in given}, config

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
        options = self.options
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, raw in data.items():
            dest = key.replace("-", "_")
            option = options.get(dest)
            if option is None:
                known = ", ".join(sorted(o.key for o in options.values()))
                raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {known}")
            if dest in spelled:
                raise ConfigError(
                    f"config file {path}: {key!r} and {spelled[dest]!r} set the same option"
                )
            spelled[dest] = key
            where = f"config file {path}, key {key!r}"
            value = self._from_toml(option, raw, where=where, base=path.parent)
            if value is not _UNSET:
                values[dest] = value
        return values

    def read_environment(self) -> dict[str, Any]:
        """The options ``<PREFIX>...`` variables set, by ``dest``, converted and checked.

        Raises:
            ConfigError: an unknown variable under the prefix, or a bad value.
        """
        by_name = {self.env_name(dest): option for dest, option in self.options.items()}
        values: dict[str, Any] = {}
        for name, text in self.environ.items():
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

    # -- inside parse_args ---------------------------------------------------------

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """The parser's ``parse_known_args``, with the file and environment under the flags."""
        try:
            _, values, config = self.layers(args)
        except ConfigError as exc:
            self.parser.exit(2, f"{self.parser.prog}: error: {exc}\n")
        # Options set by the file or environment are not required on the command line;
        # the rest are, as argparse reports.
        with _relaxed(self.parser, set(values), suppress_defaults=False):
            parsed, extras = self._parse_known_args(args, namespace)
        for dest, value in values.items():
            setattr(parsed, dest, value)
        if config is not None:
            setattr(parsed, self.config_dest, config)
        return parsed, extras

    # -- conversions ---------------------------------------------------------------

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
        # An append option given on the command line adds to its default; the same here.
        initial = copy.copy(option.default) if option.repeatable else None
        scratch = argparse.Namespace(**{option.dest: initial})
        for strings in occurrences:
            _check_count(option, strings, where=where)
            try:
                values = self.parser._get_values(action, list(strings))
            except argparse.ArgumentError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            action(self.parser, scratch, _rebase(values, base), option.flag)
        return getattr(scratch, option.dest)


def enable(
    parser: argparse.ArgumentParser,
    *,
    env_prefix: str,
    config_dest: str = "config",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Let every option of ``parser`` come from a config file and the environment too.

    From then on the parser's ``parse_known_args`` (so ``parse_args``, and a parent
    parser's dispatch to this subparser) reads the config file and the environment
    and fills the namespace by precedence. Options added later are included.

    Args:
        parser: the (sub)command's parser; it must have an option whose dest is
            ``config_dest`` (the config file's path).
        env_prefix: prefix of the environment variables, e.g. ``"MESH_NODE_"``.
        config_dest: dest of the config file option.
        environ: the environment to read (default: the process's, at each parse).

    Raises:
        ValueError: ``parser`` has no ``config_dest`` option.
    """
    if not any(a.dest == config_dest and a.option_strings for a in parser._actions):
        raise ValueError(f"the parser has no option with dest {config_dest!r}")
    settings = Settings(
        parser,
        env_prefix=env_prefix,
        config_dest=config_dest,
        environ=environ,
        parse_known_args=parser.parse_known_args,
    )
    # On the instance: argparse's dispatch to a subparser calls parse_known_args.
    parser.parse_known_args = settings.parse_known_args  # type: ignore[method-assign,assignment]
    return settings


def settings_of(parser: argparse.ArgumentParser, *path: str) -> Settings:
    """The :class:`Settings` of ``parser``, or of its subcommand ``path`` (``"node"``).

    Raises:
        KeyError: no such subcommand, or it was not enabled.
    """
    for name in path:
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subcommands or name not in subcommands[0]._name_parser_map:
            raise KeyError(name)
        parser = subcommands[0]._name_parser_map[name]
    settings = getattr(parser.parse_known_args, "__self__", None)  # set by enable()
    if not isinstance(settings, Settings):
        raise KeyError(f"{parser.prog}: no config file support")
    return settings


@contextmanager
def _relaxed(
    parser: argparse.ArgumentParser, dests: set[str], *, suppress_defaults: bool
) -> Iterator[None]:
    """For the block, the options in ``dests`` are not required, and with
    ``suppress_defaults`` they are left out of the namespace unless given; restored after."""
    saved = []
    for action in parser._actions:
        if action.option_strings and action.dest in dests:
            saved.append((action, action.default, action.required))
            action.required = False
            if suppress_defaults:
                action.default = argparse.SUPPRESS
    try:
        yield
    finally:
        for action, old_default, old_required in saved:
            action.default, action.required = old_default, old_required


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
