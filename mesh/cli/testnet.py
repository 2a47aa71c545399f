"""``mesh testnet`` (a local testnet until Ctrl-C) and ``mesh demo`` (the README's main job)."""

from __future__ import annotations

import argparse
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from mesh.errors import ConfigError

DEMO_MODELS = ("tiny-mlp", "tiny-gpt")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    testnet = subparsers.add_parser(
        "testnet",
        help="run N node processes on 127.0.0.1 until Ctrl-C or SIGTERM",
        description="Start N node processes on 127.0.0.1, write a bootstrap file, print a "
        "line containing 'ready' once every node's adverts are findable, and stop all of "
        "them cleanly on Ctrl-C or SIGTERM.",
    )
    testnet.add_argument("--nodes", type=_count, default=3, help="node processes (default 3)")
    testnet.add_argument(
        "--models", default="tiny-mlp", help="comma-separated zoo names (default tiny-mlp)"
    )
    testnet.add_argument(
        "--bootstrap-out", type=Path, required=True, help="write the bootstrap list here"
    )
    testnet.add_argument("--regions", default="", help="comma-separated region labels")
    testnet.add_argument("--work-dir", type=Path, help="keys and receipt logs (default: temp)")
    testnet.add_argument(
        "--ready-timeout", type=float, default=120.0, help="seconds to become ready"
    )
    testnet.add_argument(
        "--liars",
        type=int,
        default=0,
        metavar="K",
        help="for researchers: K of the nodes sign wrong answers on purpose (default 0)",
    )
    testnet.add_argument(
        "--lie",
        default="perturb",
        metavar="KIND[,KIND...]",
        help="how liars lie, round-robin: perturb (alter outputs after running), lazy (never "
        "run the model, advertise an empty queue), rate:F (perturb a fraction F)",
    )
    testnet.set_defaults(func=testnet_command)

    demo = subparsers.add_parser(
        "demo",
        help="start a 3-node testnet, run tasks with verified receipts, stop",
        description="The main job: a local testnet of 3 nodes answers a tiny-mlp "
        "classification and a tiny-gpt generation; every receipt is verified.",
    )
    demo.add_argument("--nodes", type=_count, default=3, help="node processes (default 3)")
    demo.set_defaults(func=demo_command)


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError("between 1 and 200 nodes")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("no model names given")
    return names


def testnet_command(args: argparse.Namespace) -> int:
    from mesh.testnet.launcher import Testnet, TestnetConfig

    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    config = TestnetConfig(
        nodes=args.nodes,
        model_names=_names(args.models),
        work_dir=args.work_dir,
        regions=regions,
        ready_timeout_s=args.ready_timeout,
        liars=args.liars,
        lies=tuple(k.strip() for k in args.lie.split(",") if k.strip()),
    )
    # Block the stop signals before starting, so one arriving during start-up
    # waits for us; children unblock them for themselves.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    net = Testnet(config)
    net.start()
    try:
        net.write_bootstrap_file(args.bootstrap_out)
        print(
            f"ready: {len(net.nodes)} nodes serving {','.join(config.model_names)} "
            f"in {net.ready_s:.1f} s; bootstrap list in {args.bootstrap_out}",
            flush=True,
        )
        for node in net.nodes:
            print(f"  node {node.index} pid {node.pid} {node.addrs[0]}", flush=True)
        for node in net.nodes:
            if node.lie:
                print(f"  liar {node.index} {node.peer_id} {node.lie}", flush=True)
        signum = signal.sigwait(stop_signals)
        print(f"signal {signum}: stopping {len(net.nodes)} nodes", flush=True)
    finally:
        net.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    print("stopped", flush=True)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    import trio

    from mesh.testnet.launcher import Testnet, TestnetConfig

    print(f"starting a testnet of {args.nodes} nodes serving {', '.join(DEMO_MODELS)} ...")
    with Testnet(TestnetConfig(nodes=args.nodes, model_names=DEMO_MODELS)) as net:
        print(f"ready in {net.ready_s:.1f} s")
        ok = trio.run(_demo_tasks, net.bootstrap_addrs)
        print("stopping the testnet ...")
    print("done" if ok else "FAILED")
    return 0 if ok else 1


def _argmax(row: tuple[float, ...]) -> int:
    return max(range(len(row)), key=row.__getitem__)


async def _demo_tasks(bootstrap: list[str]) -> bool:
    from mesh.client.async_client import AsyncClient
    from mesh.core.identity import peer_id_from_public_key
    from mesh.core.receipts import verify_receipt
    from mesh.core.tensors import Tensor

    rows = [[((i * 7 + j) % 11) / 5.0 - 1.0 for j in range(32)] for i in range(2)]
    x = Tensor("float32", (2, 32), struct.pack("<64f", *[v for row in rows for v in row]))
    async with AsyncClient.connect(bootstrap=bootstrap) as client:
        t0 = time.monotonic()
        mlp = await client.run("tiny-mlp", {"x": x}, timeout=30)
        logits = mlp.outputs["logits"]
        assert isinstance(logits, Tensor)
        values = struct.unpack(f"<{logits.numel}f", logits.data)
        classes = [_argmax(values[r * 10 : (r + 1) * 10]) for r in range(2)]
        print(f"tiny-mlp: classes {classes} from {mlp.worker[:16]}… in {mlp.latency_ms:.1f} ms")
        gpt = await client.run(
            "tiny-gpt",
            {"prompt": ["The mesh"]},
            timeout=60,
            seed=7,
            max_tokens=24,
            temperature_milli=800,
            top_k=40,
        )
        print(
            f"tiny-gpt (random weights, so noise): {gpt.outputs.get('text')!r} "
            f"from {gpt.worker[:16]}…"
        )
        for result in (mlp, gpt):
            # The client already verified; check again offline, as anyone could.
            verify_receipt(result.receipt, task=result.task, outputs=result.outputs)
            receipt = result.receipt.message
            signer = peer_id_from_public_key(receipt.worker)
            print(
                f"  receipt seq={receipt.seq} worker={signer[:16]}… "
                f"task={receipt.task_id.hex()[:8]} "
                f"output={receipt.output_hash.hex()[:8]} runtime={receipt.runtime.get('device')}/"
                f"{receipt.runtime.get('dtype')} commitment={len(receipt.commitment)} B: verified"
            )
        print(f"all receipts verified in {time.monotonic() - t0:.1f} s", file=sys.stdout)
    return True
