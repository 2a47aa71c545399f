"""Bootstrap lists: one multiaddr per line, each naming its peer with ``/p2p/``.

Format of a bootstrap file (and of ``--bootstrap`` lists)::

    # comments start with '#', anywhere on a line; blank lines are ignored
    /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...
    /dns4/boot.example.org/tcp/4001/p2p/12D3KooW...   # trailing comment

Each address must parse as a multiaddr and end in ``/p2p/<peer id>``: without
the peer id a dialer cannot check who answered (Noise authenticates the key it
expects). A bad line raises :class:`mesh.errors.ConfigError` naming the file and
line number. Imports only py-multiaddr (a few ms), never libp2p.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mesh.errors import ConfigError
from mesh.net.multiaddrs import parse_peer_addr

# A bootstrap file is a short hand-written list; anything bigger is a mistake.
MAX_BOOTSTRAP_FILE_BYTES = 1024 * 1024


def parse_bootstrap_lines(lines: Iterable[str], *, source: str = "<bootstrap>") -> list[str]:
    """Parse bootstrap lines: comments and blank lines skipped, duplicates dropped.

    Args:
        lines: the lines of a bootstrap file (or one address per item).
        source: the file name, quoted in errors as ``source:line``.

    Raises:
        ConfigError: on the first bad line, naming ``source`` and its line number.
    """
    result: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        addr = parse_peer_addr(text, where=f"{source}:{number}")
        if addr not in seen:
            seen.add(addr)
            result.append(addr)
    return result


def load_bootstrap_file(path: str | Path) -> list[str]:
    """Read and parse a bootstrap file.

    Raises:
        ConfigError: unreadable, too big, not UTF-8, or a bad line.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read bootstrap file ({exc})") from exc
    if len(data) > MAX_BOOTSTRAP_FILE_BYTES:
        raise ConfigError(f"{file}: bootstrap file over {MAX_BOOTSTRAP_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: bootstrap file is not UTF-8") from exc
    return parse_bootstrap_lines(text.splitlines(), source=str(file))
