"""Keeps ``mesh.__all__`` honest: every name resolves, nothing heavy is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mesh

pytestmark = pytest.mark.unit


def test_every_public_name_resolves() -> None:
    for name in mesh.__all__:
        assert getattr(mesh, name) is not None, name


def test_all_is_sorted_and_unique_and_listed_in_dir() -> None:
    assert len(set(mesh.__all__)) == len(mesh.__all__)
    assert set(mesh.__all__) <= set(dir(mesh))


def test_errors_are_one_tree() -> None:
    for name in mesh.__all__:
        value = getattr(mesh, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, mesh.MeshError), name


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        mesh.NoSuchThing  # noqa: B018


def test_import_mesh_and_touch_the_sdk_imports_neither_torch_nor_libp2p() -> None:
    code = (
        "import sys, mesh\n"
        "[getattr(mesh, n) for n in mesh.__all__]\n"
        "heavy = [m for m in ('torch', 'libp2p') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_testing_module_is_honest_and_light() -> None:
    import mesh.testing

    for name in mesh.testing.__all__:
        assert getattr(mesh.testing, name) is not None, name
    code = (
        "import sys, mesh.testing\n"
        "heavy = [m for m in ('torch', 'libp2p') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_closed_client_says_closed_not_no_peers() -> None:
    from mesh.testing import MemoryHub, PeerAddr, fixed_wall_clock

    hub = MemoryHub()
    async with hub.join("client") as net:
        client = mesh.AsyncClient(net, wall_clock=fixed_wall_clock(1.7e9))
        async with client:
            pass
        with pytest.raises(mesh.Closed):
            await client.run("tiny-mlp", {"x": ["a"]}, timeout=1)
    with pytest.raises(mesh.Closed):
        await net.request(PeerAddr("other"), "/p", b"x", timeout=1)
