"""``mesh.cli.nodeconf``: options from a TOML file and the environment, under the flags.

Most tests use a small parser shaped like ``mesh node``'s (a subcommand of a root
parser, so the file and environment are read inside argparse's dispatch, as in
``mesh``), holding one option of each kind of argparse action; the last ones use
the real ``mesh node`` parser.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from mesh.cli import build_parser, nodeconf
from mesh.cli.node import build_config
from mesh.core.identity import Identity
from mesh.errors import ConfigError
from mesh.files.keyfile import write_key_file

pytestmark = pytest.mark.unit

PREFIX = "TOY_"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def toy_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """A root parser with one ``toy`` subcommand holding one option of each kind."""
    root = argparse.ArgumentParser(prog="toy-cli")
    sub = root.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy")
    toy.add_argument("--name", required=True)
    toy.add_argument("--region", default="")
    toy.add_argument("--price-micro", type=_positive, default=1)
    toy.add_argument("--ratio", type=float, default=0.5)
    toy.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    toy.add_argument("--level", type=int, default="3")  # a string default goes through type=
    toy.add_argument("--listen", action="append", metavar="ADDR")
    toy.add_argument("--zoo", action="append", type=Path, default=[])
    toy.add_argument("--key", type=Path)
    toy.add_argument("--pair", nargs=2, type=int)
    toy.add_argument("--tags", nargs="+")
    toy.add_argument("--fast", action="store_true")
    toy.add_argument("--no-color", dest="color", action="store_false")
    toy.add_argument("--audit", action=argparse.BooleanOptionalAction, default=True)
    toy.add_argument("--mode", action="store_const", const="eager", default="lazy")
    toy.add_argument("-q", "--quiet", action="count", default=0)
    toy.add_argument("--config", type=Path)
    toy.set_defaults(func=lambda args: 0)
    nodeconf.enable(toy, env_prefix=PREFIX, environ=env or {})
    return root


def resolve(argv: list[str], *, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    return toy_parser(env).parse_args(argv)


def refused(
    argv: list[str], capsys: pytest.CaptureFixture[str], *, env: Mapping[str, str] | None = None
) -> str:
    """The message of the argparse-style error (exit 2) the parse ends with."""
    with pytest.raises(SystemExit) as exited:
        resolve(argv, env=env)
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    prog, _, message = last.partition(" error: ")
    assert prog == "toy-cli toy:", last
    return message


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence -------------------------------------------------------------------------


def test_defaults_when_nothing_sets_an_option() -> None:
    args = resolve(["toy", "--name", "n"])
    assert args.region == "" and args.price_micro == 1 and args.device == "auto"
    assert args.level == 3  # the string default went through type=int, as argparse does
    assert args.listen is None and args.zoo == [] and args.key is None
    assert args.fast is False and args.color is True and args.audit is True
    assert args.mode == "lazy" and args.quiet == 0 and args.config is None


@pytest.mark.parametrize(
    ("file_text", "env", "flags", "expected"),
    [
        ("", {}, [], ("", 1)),
        ('region = "file"\nprice-micro = 5\n', {}, [], ("file", 5)),
        (
            'region = "file"\nprice-micro = 5\n',
            {"TOY_REGION": "env", "TOY_PRICE_MICRO": "6"},
            [],
            ("env", 6),
        ),
        (
            'region = "file"\nprice-micro = 5\n',
            {"TOY_REGION": "env", "TOY_PRICE_MICRO": "6"},
            ["--region", "flag", "--price-micro", "7"],
            ("flag", 7),
        ),
        ('region = "file"\n', {}, ["--region", "flag"], ("flag", 1)),
        ('region = "file"\n', {"TOY_PRICE_MICRO": "6"}, [], ("file", 6)),
    ],
)
def test_precedence_default_file_environment_flag(
    tmp_path: Path,
    file_text: str,
    env: dict[str, str],
    flags: list[str],
    expected: tuple[str, int],
) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\n' + file_text)
    args = resolve(["toy", "--config", str(config), *flags], env=env)
    assert (args.region, args.price_micro) == expected


def test_a_flag_equal_to_the_default_still_beats_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\ndevice = "cpu"\nprice_micro = 9\n')
    args = resolve(["toy", "--config", str(config), "--device", "auto", "--price-micro", "1"])
    assert args.device == "auto" and args.price_micro == 1


def test_the_config_file_can_be_named_in_the_environment(tmp_path: Path) -> None:
    by_env = write(tmp_path / "env.toml", 'name = "n"\nregion = "from-env-file"\n')
    by_flag = write(tmp_path / "flag.toml", 'name = "n"\nregion = "from-flag-file"\n')
    assert resolve(["toy"], env={"TOY_CONFIG": str(by_env)}).region == "from-env-file"
    args = resolve(["toy", "--config", str(by_flag)], env={"TOY_CONFIG": str(by_env)})
    assert args.region == "from-flag-file" and args.config == by_flag


def test_both_spellings_of_a_key_are_accepted_but_not_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dash = write(tmp_path / "a.toml", 'name = "n"\nprice-micro = 4\n')
    under = write(tmp_path / "b.toml", 'name = "n"\nprice_micro = 4\n')
    assert resolve(["toy", "--config", str(dash)]).price_micro == 4
    assert resolve(["toy", "--config", str(under)]).price_micro == 4
    both = write(tmp_path / "c.toml", 'name = "n"\nprice-micro = 4\nprice_micro = 5\n')
    message = refused(["toy", "--config", str(both)], capsys)
    assert message.endswith("'price_micro' and 'price-micro' set the same option")


# --- refusals ---------------------------------------------------------------------------


def test_an_unknown_key_is_refused_with_its_name_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\nregoin = "eu"\n')
    message = refused(["toy", "--config", str(config)], capsys)
    assert message.startswith(f"config file {config}: unknown key 'regoin'; known keys: ")
    assert "region" in message  # the known keys are listed


def test_the_settings_api_raises_config_error(tmp_path: Path) -> None:
    settings = nodeconf.settings_of(toy_parser(), "toy")
    config = write(tmp_path / "toy.toml", 'regoin = "eu"\n')
    with pytest.raises(ConfigError, match="unknown key 'regoin'"):
        settings.read_file(config)
    bad_env = nodeconf.settings_of(toy_parser({"TOY_FAST": "maybe"}), "toy")
    with pytest.raises(ConfigError, match="environment variable TOY_FAST"):
        bad_env.read_environment()


@pytest.mark.parametrize("key", ["config", "help", "command", "func"])
def test_keys_that_are_no_options_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    config = write(tmp_path / "toy.toml", f'name = "n"\n{key} = "x"\n')
    assert f"unknown key '{key}'" in refused(["toy", "--config", str(config)], capsys)


@pytest.mark.parametrize(
    ("flag", "value", "toml"),
    [
        ("--price-micro", "0", "price-micro = 0"),  # the type function's own message
        ("--price-micro", "many", 'price-micro = "many"'),  # invalid _positive value
        ("--ratio", "fast", 'ratio = "fast"'),  # invalid float value
        ("--device", "tpu", 'device = "tpu"'),  # invalid choice
    ],
)
def test_a_bad_value_in_the_file_gets_the_command_line_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, toml: str
) -> None:
    on_command_line = refused(["toy", "--name", "n", flag, value], capsys)
    config = write(tmp_path / "toy.toml", f'name = "n"\n{toml}\n')
    key = toml.split(" = ")[0]
    in_file = refused(["toy", "--config", str(config)], capsys)
    assert in_file == f"config file {config}, key {key!r}: {on_command_line}"


def test_a_bad_value_in_the_environment_gets_the_command_line_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    on_command_line = refused(["toy", "--name", "n", "--device", "tpu"], capsys)
    in_env = refused(["toy", "--name", "n"], capsys, env={"TOY_DEVICE": "tpu"})
    assert in_env == f"environment variable TOY_DEVICE: {on_command_line}"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("region = true", "--region takes a value as on the command line, not true/false"),
        ("region = [1, 2]", "not an array"),
        ("region = { a = 1 }", "not a table"),
        ("region = 1979-05-27", "not a date or time"),
        ("fast = 1", "--fast takes true or false"),
        ("quiet = true", "--quiet takes a count"),
        ("quiet = -1", "--quiet takes a count"),
        ("pair = 1", "--pair takes an array of values"),
        ("pair = [1, 2, 3]", "argument --pair: expected 2 arguments"),
        ("tags = []", "argument --tags: expected at least one argument"),
        ("listen = [[1]]", "--listen takes a value as on the command line, not an array"),
    ],
)
def test_values_of_the_wrong_toml_kind_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    config = write(tmp_path / "toy.toml", f'name = "n"\n{toml}\n')
    assert expected in refused(["toy", "--config", str(config)], capsys)


def test_a_missing_or_broken_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "absent.toml"
    assert refused(["toy", "--config", str(absent)], capsys) == (
        f"cannot read config file {absent}: No such file or directory"
    )
    broken = write(tmp_path / "broken.toml", "name = \n")
    assert "is not valid TOML" in refused(["toy", "--config", str(broken)], capsys)


def test_an_unknown_variable_under_the_prefix_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = refused(["toy", "--name", "n"], capsys, env={"TOY_REGOIN": "eu"})
    assert message.startswith("unknown environment variable TOY_REGOIN; known: ")
    # Others are not ours to judge.
    assert resolve(["toy", "--name", "n"], env={"OTHER_REGION": "x"}).region == ""


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\nprice-micro = 4\n')
    args = resolve(["toy", "--config", str(config)], env={"TOY_PRICE_MICRO": ""})
    assert args.price_micro == 4


# --- required options -------------------------------------------------------------------


def test_a_required_option_may_come_from_file_or_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "toy.toml", 'name = "from-file"\n')
    assert resolve(["toy", "--config", str(config)]).name == "from-file"
    assert resolve(["toy"], env={"TOY_NAME": "from-env"}).name == "from-env"


def test_a_required_option_set_nowhere_is_reported_as_argparse_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert refused(["toy"], capsys) == "the following arguments are required: --name"


# --- lists, flags, paths ----------------------------------------------------------------


def test_a_repeatable_option_takes_an_array_or_one_value(tmp_path: Path) -> None:
    many = write(tmp_path / "many.toml", 'name = "n"\nlisten = ["/ip4/a", "/ip4/b"]\n')
    assert resolve(["toy", "--config", str(many)]).listen == ["/ip4/a", "/ip4/b"]
    one = write(tmp_path / "one.toml", 'name = "n"\nlisten = "/ip4/a"\n')
    assert resolve(["toy", "--config", str(one)]).listen == ["/ip4/a"]


def test_a_repeatable_option_in_the_environment_is_comma_separated() -> None:
    args = resolve(["toy", "--name", "n"], env={"TOY_LISTEN": "/ip4/a, /ip4/b,"})
    assert args.listen == ["/ip4/a", "/ip4/b"]


def test_a_flag_replaces_a_list_from_file_or_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\nlisten = ["/ip4/a", "/ip4/b"]\n')
    args = resolve(["toy", "--config", str(config), "--listen", "/ip4/c"])
    assert args.listen == ["/ip4/c"]
    args = resolve(["toy", "--config", str(config)], env={"TOY_LISTEN": "/ip4/d"})
    assert args.listen == ["/ip4/d"]


def test_options_taking_several_values(tmp_path: Path) -> None:
    config = write(tmp_path / "toy.toml", 'name = "n"\npair = [3, 4]\ntags = ["x", "y"]\n')
    args = resolve(["toy", "--config", str(config)])
    assert args.pair == [3, 4] and args.tags == ["x", "y"]
    args = resolve(["toy", "--name", "n"], env={"TOY_PAIR": "5,6", "TOY_TAGS": "z"})
    assert args.pair == [5, 6] and args.tags == ["z"]


def test_flags_from_file_and_environment(tmp_path: Path) -> None:
    config = write(
        tmp_path / "toy.toml",
        'name = "n"\nfast = true\ncolor = false\naudit = false\nmode = true\nquiet = 2\n',
    )
    args = resolve(["toy", "--config", str(config)])
    assert args.fast is True and args.color is False and args.audit is False
    assert args.mode == "eager" and args.quiet == 2
    env = {"TOY_FAST": "no", "TOY_COLOR": "On", "TOY_AUDIT": "1", "TOY_QUIET": "0"}
    args = resolve(["toy", "--config", str(config)], env=env)
    assert args.fast is False and args.color is True and args.audit is True and args.quiet == 0
    off = write(tmp_path / "off.toml", 'name = "n"\nmode = false\n')
    assert resolve(["toy", "--config", str(off)]).mode == "lazy"
    with pytest.raises(SystemExit):
        resolve(["toy", "--name", "n"], env={"TOY_FAST": "maybe"})


def test_relative_paths_in_the_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = write(folder / "toy.toml", 'name = "n"\nkey = "keys/node.key"\nzoo = ["z", "/abs"]\n')
    args = resolve(["toy", "--config", str(config)])
    assert args.key == folder / "keys" / "node.key"
    assert args.zoo == [folder / "z", Path("/abs")]


def test_a_relative_config_path_still_anchors_the_file_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc" / "toy.toml", 'name = "n"\nkey = "node.key"\n')
    monkeypatch.chdir(tmp_path)
    args = resolve(["toy", "--config", "etc/toy.toml"])
    assert args.key == Path("etc/node.key")
    assert args.key.resolve() == (tmp_path / "etc" / "node.key").resolve()


def test_tilde_is_expanded_and_environment_paths_stay_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = write(tmp_path / "toy.toml", 'name = "n"\nkey = "~/.mesh/node.key"\n')
    assert resolve(["toy", "--config", str(config)]).key == tmp_path / ".mesh" / "node.key"
    args = resolve(["toy", "--name", "n"], env={"TOY_KEY": "rel/node.key"})
    assert args.key == Path("rel/node.key")  # like a flag: relative to the working folder
    assert resolve(["toy", "--name", "n"], env={"TOY_KEY": "~/k"}).key == tmp_path / "k"


def test_the_process_environment_is_read_at_each_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    root = argparse.ArgumentParser()
    sub = root.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy")
    toy.add_argument("--region", default="")
    toy.add_argument("--config", type=Path)
    nodeconf.enable(toy, env_prefix=PREFIX)  # no environ: the process's
    assert root.parse_args(["toy"]).region == ""
    monkeypatch.setenv("TOY_REGION", "from-env")
    assert root.parse_args(["toy"]).region == "from-env"


def test_options_added_after_enable_are_settable_too(tmp_path: Path) -> None:
    root = argparse.ArgumentParser()
    sub = root.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy")
    toy.add_argument("--config", type=Path)
    nodeconf.enable(toy, env_prefix=PREFIX, environ={"TOY_LATE": "7"})
    toy.add_argument("--late", type=int, default=0)
    config = write(tmp_path / "toy.toml", "later = true\n")
    toy.add_argument("--later", action="store_true")
    args = root.parse_args(["toy", "--config", str(config)])
    assert (args.late, args.later) == (7, True)


def test_the_parser_is_left_as_it_was(capsys: pytest.CaptureFixture[str]) -> None:
    root = toy_parser({"TOY_NAME": "n", "TOY_REGION": "eu"})
    toy = nodeconf.settings_of(root, "toy").parser
    before = [(a.dest, a.default, a.required) for a in toy._actions]
    assert root.parse_args(["toy"]).region == "eu"
    assert [(a.dest, a.default, a.required) for a in toy._actions] == before
    with pytest.raises(SystemExit):
        root.parse_args(["toy", "--help"])
    assert "--name NAME" in capsys.readouterr().out  # still shown as required


def test_flagged_tells_flags_from_defaults() -> None:
    settings = nodeconf.settings_of(toy_parser({"TOY_REGION": "eu"}), "toy")
    flagged = vars(settings.flagged(["--device", "auto", "--listen", "x"]))
    del flagged["func"]  # a set_defaults entry, no option
    assert flagged == {"device": "auto", "listen": ["x"], "config": None}


def test_enable_needs_the_config_option() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--region")
    with pytest.raises(ValueError, match="no option with dest 'config'"):
        nodeconf.enable(parser, env_prefix=PREFIX)


def test_settings_of_a_parser_without_them() -> None:
    with pytest.raises(KeyError):
        nodeconf.settings_of(build_parser(), "keygen")
    with pytest.raises(KeyError):
        nodeconf.settings_of(build_parser(), "no-such-command")


# --- the real mesh node parser -----------------------------------------------------------


def node_settings() -> nodeconf.Settings:
    return nodeconf.settings_of(build_parser(), "node")


def test_every_mesh_node_option_is_settable_from_a_file() -> None:
    settings = node_settings()
    flags = {
        a.dest
        for a in settings.parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction) and a.dest != "config"
    }
    assert flags == set(settings.options)
    assert {"key", "listen", "models", "region", "price_micro", "drain_timeout"} <= flags


def test_a_node_config_file_gives_the_node_config_flags_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("MESH_NODE_")]:
        monkeypatch.delenv(name)
    key = tmp_path / "node.key"
    identity = Identity.generate()
    write_key_file(key, identity)
    boot = tmp_path / "boot.txt"
    boot.write_text("# none yet\n", encoding="utf-8")
    config = write(
        tmp_path / "node.toml",
        """
        key = "node.key"
        listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/4002"]
        bootstrap = "boot.txt"
        models = "tiny-mlp,tiny-gpt"
        device = "cpu"
        data-dir = "data"
        zoo = ["zoo"]
        region = "eu-west"
        price-micro = 25
        max-batch = 8
        max-queue = 32
        weights = ["tiny-gpt=/weights/gpt"]
        threads = 2
        drain-timeout = 12.5
        """,
    )
    from_file = build_parser().parse_args(["node", "--config", str(config)])
    from_flags = build_parser().parse_args(
        ["node", "--key", str(key), "--listen", "/ip4/127.0.0.1/tcp/0",
         "--listen", "/ip4/127.0.0.1/tcp/4002", "--bootstrap", str(boot),
         "--models", "tiny-mlp,tiny-gpt", "--device", "cpu",
         "--data-dir", str(tmp_path / "data"), "--zoo", str(tmp_path / "zoo"),
         "--region", "eu-west", "--price-micro", "25", "--max-batch", "8",
         "--max-queue", "32", "--weights", "tiny-gpt=/weights/gpt", "--threads", "2",
         "--drain-timeout", "12.5"]
    )  # fmt: skip
    assert build_config(from_file) == build_config(from_flags)
    seen = build_config(from_file)
    assert seen.identity.peer_id == identity.peer_id
    assert (seen.region, seen.price_micro, seen.drain_timeout_s) == ("eu-west", 25, 12.5)


def test_mesh_node_environment_names() -> None:
    settings = node_settings()
    names = {settings.env_name(dest) for dest in settings.options}
    assert {"MESH_NODE_MODELS", "MESH_NODE_PRICE_MICRO", "MESH_NODE_DATA_DIR"} <= names
    assert settings.config_env == "MESH_NODE_CONFIG"


def test_mesh_node_help_shows_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["node", "--help"])
    assert exited.value.code == 0
    assert "--config FILE" in capsys.readouterr().out
