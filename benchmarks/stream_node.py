"""A node for ``bench_streaming``: one model, per-peer caps that never refuse the benchmark.

A node caps what one peer may hold at 16: tasks in flight per client key
(NodeConfig's ``max_in_flight_per_client``) and inbound task streams per peer
(``mesh.net.inbound.InboundLimits.per_peer``). The gateway is one peer, so 32
concurrent requests through it to one node would be half refused (busy, or a
reset stream), which would measure those caps, not streaming. This launcher runs
the same node (libp2p, handler, executor) with both raised, and prints ``mesh
node``'s ready line. Run from the repository root::

    python -m benchmarks.stream_node --model NAME [--zoo DIR] [--max-batch N] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import logging
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from mesh.core.identity import Identity
from mesh.net.interface import Network
from mesh.node.config import NodeConfig
from mesh.node.runtime_runner import load_runtime_runner
from mesh.node.serve import serve_until_signal

# More than any concurrency the benchmark offers: admission never answers busy.
CAPS = 1024


def _network(config: NodeConfig) -> AbstractAsyncContextManager[Network]:
    """``mesh node``'s libp2p network, with room for the benchmark's streams from one peer."""
    from mesh.net.libp2p_net import InboundLimits, open_libp2p_network

    return open_libp2p_network(
        identity_seed=config.identity.seed,
        listen=config.listen,
        bootstrap=config.bootstrap,
        inbound=InboundLimits(per_peer=CAPS, total=CAPS),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--zoo", type=Path, action="append", default=[])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Streams refused for the per-peer cap would be the benchmark's failure: say so.
    logging.getLogger("mesh.net.libp2p_peer").setLevel(logging.INFO)
    from mesh.cli.node import print_ready_line

    data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-node-"))
    config = NodeConfig(
        identity=Identity.generate(),
        data_dir=data_dir,
        model_names=(args.model,),
        listen=("/ip4/127.0.0.1/tcp/0",),
        device="cpu",
        zoo_dirs=tuple(args.zoo),
        max_batch=args.max_batch,
        max_queue=CAPS,
        max_in_flight_per_client=CAPS,
        threads=args.threads,
        http_listen=None,
    )
    trio.run(
        functools.partial(
            serve_until_signal,
            config,
            network_factory=_network,
            runner_factory=load_runtime_runner,
            on_ready=print_ready_line,
        )
    )


if __name__ == "__main__":
    main()
