"""The core is sans-IO: importing it pulls in none of trio, libp2p or torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import mesh.core

pytestmark = pytest.mark.unit

FORBIDDEN = ("trio", "libp2p", "torch", "numpy")


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(mesh.core.__path__, "mesh.core.")]
    return ["mesh.errors", "mesh.core", *sorted(names)]


def test_core_has_the_expected_modules() -> None:
    modules = _core_modules()
    for name in (
        "identity",
        "messages",
        "signing",
        "receipts",
        "receipt_log",
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
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_public_surface_is_honest() -> None:
    for name in mesh.core.__all__:
        assert hasattr(mesh.core, name), name
    assert len(set(mesh.core.__all__)) == len(mesh.core.__all__)
