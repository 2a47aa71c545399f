"""The package list in pyproject.toml is written by hand (mesh._zoo maps to models/):
keep it complete, and keep the zoo installed under mesh, never as a top-level `models`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        data: dict[str, object] = tomllib.load(handle)["tool"]["setuptools"]
    return data


def test_every_package_under_mesh_is_listed() -> None:
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "mesh").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    listed = set(_setuptools()["packages"])  # type: ignore[call-overload]
    assert on_disk <= listed, f"add to pyproject packages: {sorted(on_disk - listed)}"


def test_zoo_is_installed_inside_mesh() -> None:
    setuptools = _setuptools()
    assert setuptools["package-dir"] == {"mesh._zoo": "models"}
    assert not any(p == "models" or p.startswith("models.") for p in setuptools["packages"])  # type: ignore[attr-defined]


def test_zoo_entries_are_one_folder_deep() -> None:
    # package-data globs are "*" and "*/*": deeper files would be left out of the wheel.
    for path in (ROOT / "models").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            depth = len(path.relative_to(ROOT / "models").parts)
            assert depth <= 2, f"{path} is too deep to be packaged"
