"""The core is sans-IO: no I/O framework, no file or OS access, in any of its modules.

Two checks: importing the core pulls in none of trio, libp2p, torch or numpy
(a fresh interpreter, so nothing else has imported them first); and the core's
own source imports no module that does file, process or OS I/O, and never calls
``open``. The standard library imports ``os`` itself (``secrets`` does), which
is why the second check reads the source instead of ``sys.modules``.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mesh.core

pytestmark = pytest.mark.unit

FORBIDDEN_FRAMEWORKS = ("trio", "libp2p", "torch", "numpy")
# Modules whose use means I/O (files, OS, processes, sockets, threads) or a clock.
FORBIDDEN_IO = frozenset(
    {
        "os",
        "fcntl",
        "mmap",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "socket",
        "subprocess",
        "threading",
        "select",
        "time",
        "asyncio",
    }
)


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(mesh.core.__path__, "mesh.core.")]
    return ["mesh.errors", "mesh.core", *sorted(names)]


def _core_sources() -> list[Path]:
    folder = Path(mesh.core.__file__).parent
    return [*sorted(folder.glob("*.py")), folder.parent / "errors.py"]


def test_core_has_the_expected_modules() -> None:
    modules = _core_modules()
    for name in (
        "identity",
        "messages",
        "signing",
        "receipts",
        "receipt_chain",
        "capacity",
        "model_root",
        "replay",
        "canonical",
        "framing",
        "tensors",
    ):
        assert f"mesh.core.{name}" in modules


def test_importing_the_core_pulls_in_no_io_framework() -> None:
    modules = _core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = [m for m in {FORBIDDEN_FRAMEWORKS!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def _io_uses(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_IO]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_IO:
                found.append(node.module)
        elif _calls_open(node):
            found.append("open()")
    return found


def _calls_open(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"


@pytest.mark.parametrize("path", _core_sources(), ids=lambda p: p.name)
def test_core_source_does_no_io(path: Path) -> None:
    assert _io_uses(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_io_check_would_catch_file_access() -> None:
    sample = "import os\nfrom fcntl import flock\nimport mmap\nwith open('x') as f: pass\n"
    assert _io_uses(ast.parse(sample)) == ["os", "fcntl", "mmap", "open()"]


def test_public_surface_is_honest() -> None:
    for name in mesh.core.__all__:
        assert hasattr(mesh.core, name), name
    assert len(set(mesh.core.__all__)) == len(mesh.core.__all__)
