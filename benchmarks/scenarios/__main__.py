"""One scenario part in a fresh process.

``python -m benchmarks.scenarios NAME --params JSON --result PATH``,

Started by ``python -m benchmarks``; writes the part's raw measurements as JSON
to ``--result`` and progress lines on stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import signal
import sys
from pathlib import Path

from benchmarks.scenarios import load
from benchmarks.scenarios.common import Progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scenarios")
    parser.add_argument("name")
    parser.add_argument("--params", default="{}", help="the part's parameters as JSON")
    parser.add_argument("--result", type=Path, required=True, help="write the part's JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _die_with_parent()
    scenario = load(args.name)
    result = scenario.run(json.loads(args.params), Progress())
    args.result.write_text(json.dumps(result), encoding="utf-8")
    return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when ``python -m benchmarks`` dies.

    The testnet's nodes already die with this process; this closes the chain,
    so an interrupted benchmark leaves no process behind.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main())
