"""Imports point down the layers, never up or sideways (ARCHITECTURE.md, Layers).

Every ``import`` and ``from ... import`` in the package (and the installed zoo's
architectures), including those inside functions and ``TYPE_CHECKING`` blocks,
is read from the source; each names the mesh package it reaches, which must be
one its own package may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mesh

pytestmark = pytest.mark.unit

ROOT = Path(mesh.__file__).parent
ZOO = ROOT.parent / "models"  # installed as mesh._zoo

_BASE = {"errors", "core"}
# Package -> the mesh packages it may import (besides itself). Bottom to top:
# core; aio, files; runtime, net; node, client; testnet; interfaces (gateway, cli).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "aio": _BASE,
    "files": _BASE,
    "runtime": _BASE | {"aio"},
    "_zoo": _BASE | {"runtime"},
    "net": _BASE | {"aio"},
    "node": _BASE | {"aio", "files", "net", "runtime"},
    # The client reads zoo manifests (torch-free runtime modules) to resolve names.
    "client": _BASE | {"aio", "files", "net", "runtime"},
    "testnet": _BASE | {"aio", "files", "net", "runtime", "node", "client"},
    "testing": _BASE | {"aio", "net", "node"},
    "gateway": _BASE | {"aio", "files", "net", "runtime", "client"},
    "cli": _BASE | {"aio", "files", "net", "runtime", "node", "client", "testnet", "gateway"},
    # The package root re-exports the SDK lazily; ``python -m mesh`` runs the CLI.
    "__init__": _BASE | {"aio", "files", "node", "client"},
    "__main__": {"cli"},
}


def _package_of(path: Path) -> str:
    if path.is_relative_to(ZOO):
        return "_zoo"
    parts = path.relative_to(ROOT).parts
    return parts[0].removesuffix(".py")


def _mesh_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("mesh.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mesh":
                found += [(node.lineno, f"mesh.{a.name}") for a in node.names]
            elif node.module.startswith("mesh."):
                found.append((node.lineno, node.module))
    return found


def _violations(path: Path, source: str) -> list[str]:
    own = _package_of(path)
    bad = []
    for line, module in _mesh_imports(ast.parse(source)):
        target = module.split(".")[1]
        if target != own and target not in ALLOWED[own]:
            bad.append(f"{path.name}:{line} {own} imports {module}")
    return bad


def _sources() -> list[Path]:
    return sorted([*ROOT.rglob("*.py"), *ZOO.rglob("*.py")])


def test_every_package_has_a_rule() -> None:
    assert {_package_of(p) for p in _sources()} <= set(ALLOWED)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_point_down(path: Path) -> None:
    assert _violations(path, path.read_text(encoding="utf-8")) == []


def test_the_check_sees_imports_up_and_sideways_wherever_they_are() -> None:
    sample = (
        "from mesh.node.service import Node\n"
        "def f():\n"
        "    import mesh.cli.node\n"
        "if TYPE_CHECKING:\n"
        "    from mesh import testnet\n"
        "from mesh.core import canonical\n"
    )
    found = _violations(ROOT / "client" / "x.py", sample)
    assert found == [
        "x.py:1 client imports mesh.node.service",
        "x.py:3 client imports mesh.cli.node",
        "x.py:5 client imports mesh.testnet",
    ]
