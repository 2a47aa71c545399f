"""A zoo: a folder of entries, each ``<name>/manifest.toml`` plus its architecture.

The built-in zoo is the repository's ``models/`` folder, installed as the data
package ``mesh._zoo``; operators can point a node at a folder of their own.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from pathlib import Path

from mesh.errors import ConfigError, ModelError
from mesh.runtime.manifest import Manifest, load_manifest

MANIFEST = "manifest.toml"
BUILTIN_PREFIX = "builtin:"


def builtin_path() -> Path:
    """The folder of the installed zoo."""
    return Path(str(importlib.resources.files("mesh._zoo")))


class Zoo:
    """The entries of one folder, keyed by manifest name."""

    def __init__(self, path: Path | str) -> None:
        """Args: path: a folder holding one subfolder per entry.

        Raises:
            ConfigError: the folder does not exist.
        """
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"zoo folder {self.path} does not exist")
        self._manifests: dict[str, Manifest] = {}
        for entry in sorted(self.path.iterdir()):
            file = entry / MANIFEST
            if file.is_file():
                manifest = load_manifest(file)
                if manifest.name in self._manifests:
                    raise ModelError(f"zoo {self.path} has two entries named {manifest.name}")
                self._manifests[manifest.name] = manifest

    @classmethod
    def builtin(cls) -> Zoo:
        """The zoo installed with the package."""
        return cls(builtin_path())

    def names(self) -> list[str]:
        """Entry names, sorted."""
        return sorted(self._manifests)

    def manifest(self, name: str) -> Manifest:
        """The manifest of ``name``. Raises ModelError when the zoo has none."""
        try:
            return self._manifests[name]
        except KeyError:
            raise ModelError(
                f"no model {name!r} in zoo {self.path} (has: {', '.join(self.names())})"
            ) from None


def search_path(zoo_dirs: Sequence[Path] = ()) -> list[Zoo]:
    """The zoos a name is looked up in, in order: the operator's folders, then the built-in one.

    Raises:
        ConfigError: a folder does not exist.
    """
    return [*(Zoo(path) for path in zoo_dirs), Zoo.builtin()]


@functools.lru_cache(maxsize=64)
def _manifests(zoo_dirs: tuple[Path, ...]) -> dict[str, Manifest]:
    # Read once per process: resolving a name per task would parse every manifest
    # of the zoo each time (milliseconds per task).
    found: dict[str, Manifest] = {}
    for zoo in search_path(zoo_dirs):
        for name in zoo.names():
            found.setdefault(name, zoo.manifest(name))
    return found


def manifests(zoo_dirs: Sequence[Path] = ()) -> dict[str, Manifest]:
    """Every model name of the search path and its manifest; the first zoo naming it wins.

    Cached per tuple of folders (a zoo edited while the process runs is not re-read).

    Raises:
        ConfigError: a folder does not exist. ModelError: a bad manifest.
    """
    return _manifests(tuple(zoo_dirs))


def find_manifest(name: str, zoo_dirs: Sequence[Path] = ()) -> Manifest:
    """The manifest of ``name`` along the search path.

    Raises:
        ModelError: no zoo has it (the message lists the names known).
    """
    known = manifests(zoo_dirs)
    if name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ModelError(f"unknown model {name!r} (zoo has: {listed})")
    return known[name]


def architecture_path(manifest: Manifest) -> Path:
    """Where the manifest's architecture file is (``builtin:`` names the installed zoo)."""
    file = manifest.architecture_file
    if file.startswith(BUILTIN_PREFIX):
        return builtin_path() / file[len(BUILTIN_PREFIX) :]
    return manifest.folder / file
