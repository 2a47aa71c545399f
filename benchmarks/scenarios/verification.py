"""``verification``: liars among honest workers; how fast audits catch them, what it costs.

Three parts, each a source of different figures:

1. ``simulate`` (many trials, seconds): the client's real audit decision code
   (:class:`mesh.client.audit.AuditDraw`, the HMAC draw, and
   :class:`mesh.client.reputation.Reputation`, the newcomer rule) against one
   worker faking each of its results with probability ``f``; an audited fake is
   caught (the in-memory part below measures that it is, every time). After the
   worker's newcomer period its honest results no longer change its audit rate,
   so from then on only its faked results are drawn: each trial runs until the
   first detection or ``max_faked`` faked results. Figures: the probability of
   detection within 60 faked results (with a Wilson 95% interval), and the curve
   of detection against faked results beside ``1 - (1 - p)^n``.
2. ``memory`` (real client, real nodes, in-memory network, virtual clock): N
   nodes answering with an echo model, K = 1 liar (``rate:F``, ``perturb`` or
   ``lazy``), one client in ``audit`` mode at the default rate sending tasks one
   after another. Per trial: tasks and faked results until the liar's first
   verdict, wrong results returned before and after it, verdicts against honest
   nodes, and extra compute (requests served by all nodes / tasks - 1).
3. ``testnet`` (real processes, tiny-mlp): ``mesh testnet`` with liars
   (``rate:0.2`` and ``lazy``), a client in ``audit`` mode, then one in
   ``redundant`` mode; every result compared with the model run in this
   process; extra compute counted from the nodes' receipt logs.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from benchmarks.scenarios.common import Progress, mlp_input, testnet
from mesh.core.values import Values
from mesh.errors import InvalidInput
from mesh.node.runner import TaskRunner, TokenHook

if TYPE_CHECKING:
    from mesh.testnet.launcher import Testnet

WITHIN = 60  # the aim: caught with probability >= 0.95 within 60 faked results
# Tasks in flight together in the memory part; the faked count at detection is read
# after the batch, so it may include up to BATCH - 1 fakes answered after the verdict.
BATCH = 5
EPOCH_S = 1_700_000_000.0


def plan(*, quick: bool, wan: str) -> list[dict[str, Any]]:
    return [
        {
            "part": "simulate",
            "trials": 20_000 if quick else 200_000,
            "rate": 0.05,
            "faking": [0.05, 0.2, 1.0],
            "max_faked": 200,
            "seed": 1,
        },
        {
            "part": "memory",
            "nodes": 5,
            "lies": ["rate:0.05", "perturb", "lazy"],
            "trials": 4 if quick else 20,
            "after": 100 if quick else 300,
            "max_tasks": 3000 if quick else 6000,
            "honest_tasks": 500 if quick else 3000,
        },
        {
            "part": "testnet",
            "nodes": 5,
            "lies": ["rate:0.2", "lazy"],
            "audit_tasks": 200 if quick else 800,
            "redundant_tasks": 60 if quick else 200,
        },
    ]


def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    parts: dict[str, Callable[[dict[str, Any], Progress], dict[str, Any]]] = {
        "simulate": _simulate,
        "memory": _memory,
        "testnet": _testnet,
    }
    started = time.monotonic()
    result = parts[params["part"]](params, progress)
    result["part"] = params["part"]
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


# -- 1. simulation over the real audit decision ----------------------------------------
def _simulate(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from mesh.client.audit import AuditDraw
    from mesh.client.reputation import NEWCOMER_CHECKS, Reputation

    rng = random.Random(params["seed"])
    rate, cap = params["rate"], params["max_faked"]
    out: dict[str, Any] = {"rate": rate, "trials": params["trials"], "per_faking": {}}
    for faking in params["faking"]:
        progress.stage(f"simulate f={faking}", params["trials"])
        detected_at: list[int | None] = []
        for _ in range(params["trials"]):
            draw = AuditDraw(rng.randbytes(32))  # a client: its own secret
            reputation = Reputation()
            faked, found = 0, None
            while found is None and faked < cap:
                record = reputation.record("liar")
                newcomer = record is None or record.confirmed < NEWCOMER_CHECKS
                fake = rng.random() < faking
                if not fake and not newcomer:
                    continue  # an honest result of an established worker: no longer matters
                audited = draw.audit(rng.randbytes(32), reputation.audit_rate("liar", rate))
                if fake:
                    faked += 1
                    if audited:
                        found = faked
                elif audited:
                    reputation.confirm("liar")
            detected_at.append(found)
            progress.advance()
        out["per_faking"][str(faking)] = _detection_figures(detected_at, rate, cap)
    return out


def _detection_figures(detected_at: list[int | None], rate: float, cap: int) -> dict[str, Any]:
    trials = len(detected_at)
    within = sum(1 for d in detected_at if d is not None and d <= WITHIN)
    low, high = _wilson(within, trials)
    curve = [
        sum(1 for d in detected_at if d is not None and d <= n) / trials for n in range(1, cap + 1)
    ]
    found = [d for d in detected_at if d is not None]
    return {
        "caught_within_60": round(within / trials, 4),
        "caught_within_60_ci95": [round(low, 4), round(high, 4)],
        "theory_within_60": round(1 - (1 - rate) ** WITHIN, 4),
        "mean_faked_until_caught": round(sum(found) / len(found), 2) if found else None,
        "never_caught_within_cap": trials - len(found),
        "curve": [round(c, 4) for c in curve],
    }


def _wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return centre - half, centre + half


# -- 2. real client and nodes on the in-memory network ----------------------------------
@dataclass
class _EchoRunner:
    """Answers ``{"out_<name>": value}`` after ``compute_s`` of virtual time."""

    served: Mapping[bytes, str]
    compute_s: float = 0.01
    ran: int = 0
    depth: int = 0

    @property
    def models(self) -> Mapping[bytes, str]:
        return self.served

    @property
    def device(self) -> str:
        return "cpu"

    def validate(self, model_root: bytes, inputs: Values, params: dict[str, int]) -> None:
        """Every input fits this echo."""

    async def run(
        self,
        model_root: bytes,
        inputs: Values,
        params: dict[str, int],
        *,
        on_start: Callable[[], None] | None = None,
        on_tokens: TokenHook | None = None,
    ) -> _Echo:
        if on_tokens is not None:
            raise InvalidInput("an echo does not generate tokens")
        self.depth += 1
        try:
            if on_start is not None:
                on_start()
            await trio.sleep(self.compute_s)
        finally:
            self.depth -= 1
        self.ran += 1
        return _Echo({f"out_{k}": v for k, v in inputs.items()})

    def runtime_class(self, model_root: bytes) -> dict[str, str | int | bool]:
        return {"device": "cpu"}

    def queue_depth(self) -> int:
        return self.depth

    def queue_capacity(self) -> int:
        return 8

    async def run_forever(self) -> None:
        await trio.sleep_forever()


@dataclass(frozen=True)
class _Echo:
    outputs: Values
    runtime: dict[str, str | int | bool] = field(default_factory=lambda: {"device": "cpu"})
    commitment: bytes = b""
    batch_size: int = 1
    compute_ms: float = 10.0


def _memory(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": params["nodes"], "per_lie": {}}
    # First every node honest, for a fixed number of tasks: what audits cost when
    # nobody lies (newcomer audits included), and that honest nodes get no verdicts.
    progress.stage("memory, all honest", 1)
    clock = trio.testing.MockClock(autojump_threshold=0)
    honest = {**params, "max_tasks": params["honest_tasks"]}
    out["honest"] = trio.run(_memory_trial, honest, "", 0, clock=clock)
    progress.advance()
    for lie in params["lies"]:
        progress.stage(f"memory {lie}", params["trials"])
        trials = []
        for trial in range(params["trials"]):
            clock = trio.testing.MockClock(autojump_threshold=0)
            trials.append(trio.run(_memory_trial, params, lie, trial, clock=clock))
            progress.advance()
        out["per_lie"][lie] = trials
    return out


async def _memory_trial(params: dict[str, Any], lie: str, trial: int) -> dict[str, Any]:
    import hashlib
    import tempfile
    from pathlib import Path

    from mesh.client.async_client import AsyncClient, ClientConfig
    from mesh.core.identity import Identity
    from mesh.node.config import NodeConfig
    from mesh.node.service import Node
    from mesh.testing import MemoryHub, fixed_wall_clock, inline_blocking

    root = hashlib.sha256(b"echo model").digest()
    hub = MemoryHub()
    runners: dict[str, _EchoRunner] = {}
    nodes: dict[str, Node] = {}
    liar = ""
    with tempfile.TemporaryDirectory(prefix="mesh-bench-verify-") as tmp:
        async with trio.open_nursery() as nursery:

            async def serve(index: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                ident = Identity.generate()
                runner = _EchoRunner({root: "echo"})
                checked: TaskRunner = runner  # mypy holds the echo to the node's protocol
                config = NodeConfig(
                    identity=ident,
                    data_dir=Path(tmp) / f"node{index}",
                    listen=(),
                    lie=lie if index == 0 else "",
                )
                async with (
                    hub.join(ident.peer_id) as net,
                    Node(
                        config,
                        network=net,
                        runner=checked,
                        wall_clock=fixed_wall_clock(EPOCH_S),
                        blocking=inline_blocking,
                    ) as node,
                ):
                    runners[node.peer_id] = runner
                    nodes[node.peer_id] = node
                    task_status.started(node.peer_id)
                    await trio.sleep_forever()

            for index in range(params["nodes"]):
                peer = await nursery.start(serve, index)
                liar = liar or peer
            ident = Identity.generate()
            config = ClientConfig(verify="audit", timeout_s=60)
            async with (
                hub.join(ident.peer_id) as net,
                AsyncClient(
                    net, identity=ident, config=config, wall_clock=fixed_wall_clock(EPOCH_S)
                ) as client,
            ):
                measured = await _audit_until_caught(client, root, liar, lie, nodes, params)
            measured["extra_compute"] = round(
                sum(hub.requests_served.values()) / measured["tasks"] - 1, 4
            )
            measured["trial"] = trial
            nursery.cancel_scope.cancel()
    return measured


async def _audit_until_caught(
    client: Any,
    root: bytes,
    liar: str,
    lie: str,
    nodes: Mapping[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    lying_runner = nodes[liar]._runner  # the node's LyingRunner (when it lies): counts fakes
    tasks = 0
    wrong_before = wrong_after = 0
    caught_task: int | None = None
    faked_at_catch: int | None = None
    liar_tasks_at_catch: int | None = None
    liar_results = 0
    while tasks < params["max_tasks"]:
        if caught_task is not None and tasks >= caught_task + params["after"]:
            break
        # A few tasks in flight at once, as a map would: our own in-flight tasks count
        # as load, which spreads traffic over the nodes (one task at a time would stay
        # on the first nodes measured and might never reach the liar).
        batch = [mlp_input(tasks + i) for i in range(BATCH)]
        results = await client.map(root, batch, concurrency=BATCH, timeout=60)
        tasks += BATCH
        for x, result in zip(batch, results, strict=True):
            if result.worker == liar and caught_task is None:
                liar_results += 1
            if result.outputs != {f"out_{k}": v for k, v in x.items()}:
                if caught_task is None:
                    wrong_before += 1
                else:
                    wrong_after += 1
        if caught_task is None and client.reputation.excluded(liar):
            caught_task = tasks
            faked_at_catch = getattr(lying_runner, "lied", 0)
            liar_tasks_at_catch = liar_results
    made = client.verdicts()
    return {
        "tasks": tasks,
        "caught_at_task": caught_task,
        "faked_until_caught": faked_at_catch,
        "liar_results_until_caught": liar_tasks_at_catch,
        "wrong_before": wrong_before,
        "wrong_after": wrong_after,
        "verdicts": len(made),
        "verdicts_against_honest": sum(
            1
            for v in made
            # with an honest node 0 (lie ""), every verdict is against an honest node
            if v.verdict.message.worker != _key(liar) or not lie
        ),
    }


def _key(peer_id: str) -> bytes:
    from mesh.core.identity import public_key_from_peer_id

    return public_key_from_peer_id(peer_id)


# -- 3. real processes -------------------------------------------------------------------
def _testnet(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress.stage(f"starting {params['nodes']} nodes", 1)
    with testnet(params["nodes"], liars=len(params["lies"]), lies=tuple(params["lies"])) as net:
        progress.advance()
        lies = {n.peer_id: n.lie for n in net.nodes if n.lie}
        out: dict[str, Any] = {"nodes": params["nodes"], "lies": sorted(lies.values())}
        before = _receipts(net)
        out["audit"] = trio.run(_testnet_audit, net, lies, params, progress)
        middle = _receipts(net)
        out["redundant"] = trio.run(_testnet_redundant, net, lies, params, progress)
        after = _receipts(net)
    out["audit"]["extra_compute"] = round((middle - before) / params["audit_tasks"] - 1, 4)
    out["redundant"]["extra_compute"] = round((after - middle) / params["redundant_tasks"] - 1, 4)
    return out


def _receipts(net: Testnet) -> int:
    from mesh.node.receipt_log import read_receipts

    return sum(
        len(read_receipts(n.config.receipt_log_path))
        for n in net.nodes
        if n.config.receipt_log_path.exists()
    )


def _reference() -> Callable[[Values, Any], bool]:
    """A predicate: is this tiny-mlp result wrong? (the model run in this process)."""
    from mesh.client.compare import compare_results, profile_for
    from mesh.runtime.registry import load_model
    from mesh.runtime.zoo import find_manifest

    model = load_model(find_manifest("tiny-mlp"), device="cpu")
    profile = profile_for(model.model_root)

    def wrong(x: Values, result: Any) -> bool:
        (ref,) = model.run_batch([(x, {})])
        mine = (result.outputs, result.receipt.message.runtime)
        return not compare_results(profile, mine, (ref.outputs, model.runtime_claim(1))).agree

    return wrong


async def _testnet_audit(
    net: Testnet, lies: dict[str, str], params: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    from mesh.client.async_client import AsyncClient, ClientConfig

    wrong = _reference()
    total = params["audit_tasks"]
    per_liar: dict[str, dict[str, int | None]] = {
        lie: {"results_until_caught": 0, "caught_after_tasks": None} for lie in lies.values()
    }
    until_caught = dict.fromkeys(lies.values(), 0)
    wrong_before = wrong_after = 0
    served = Counter[str]()
    config = ClientConfig(verify="audit", timeout_s=60)
    progress.stage("testnet audit", total)
    async with AsyncClient.connect(bootstrap=net.bootstrap_addrs, config=config) as client:
        done = 0
        while done < total:
            batch = [mlp_input(done + i) for i in range(min(20, total - done))]
            caught_before = set(client.reputation.caught())
            results = await client.map("tiny-mlp", batch, concurrency=8)
            for x, result in zip(batch, results, strict=True):
                served[lies.get(result.worker, "honest")] += 1
                if wrong(x, result):
                    if result.worker in caught_before:
                        wrong_after += 1
                    else:
                        wrong_before += 1
                lie = lies.get(result.worker)
                if lie is not None and result.worker not in caught_before:
                    until_caught[lie] += 1
            done += len(batch)
            for peer in set(client.reputation.caught()) - caught_before:
                if peer in lies:
                    per_liar[lies[peer]]["caught_after_tasks"] = done
            progress.advance(len(batch))
        made = client.verdicts()
    for lie, count in until_caught.items():
        per_liar[lie]["results_until_caught"] = count
    return {
        "tasks": total,
        "per_liar": per_liar,
        "results_by_worker_kind": dict(served),
        "wrong_before_caught": wrong_before,
        "wrong_after_caught": wrong_after,
        "verdicts": len(made),
        "verdicts_against_honest": sum(
            1 for v in made if v.verdict.message.worker not in {_key(p) for p in lies}
        ),
    }


async def _testnet_redundant(
    net: Testnet, lies: dict[str, str], params: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    from mesh.client.async_client import AsyncClient, ClientConfig

    wrong = _reference()
    total = params["redundant_tasks"]
    progress.stage("testnet redundant", total)
    config = ClientConfig(verify="redundant", timeout_s=60)
    async with AsyncClient.connect(bootstrap=net.bootstrap_addrs, config=config) as client:
        batch = [mlp_input(10_000 + i) for i in range(total)]
        results = await client.map("tiny-mlp", batch, concurrency=8)
        progress.advance(total)
        made = client.verdicts()
    return {
        "tasks": total,
        "wrong_returned": sum(wrong(x, r) for x, r in zip(batch, results, strict=True)),
        "verdicts": len(made),
        "verdicts_against_honest": sum(
            1 for v in made if v.verdict.message.worker not in {_key(p) for p in lies}
        ),
    }


# -- figures ---------------------------------------------------------------------------
def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    by_part = {p["part"]: p for p in parts}
    figures: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    if "simulate" in by_part:
        sim = by_part["simulate"]
        five = sim["per_faking"].get("0.05")
        if five is not None:
            figures["caught_within_60"] = five["caught_within_60"]
            figures["caught_within_60_ci95"] = five["caught_within_60_ci95"]
            figures["caught_within_60_lower95"] = five["caught_within_60_ci95"][0]
            figures["theory_within_60"] = five["theory_within_60"]
        figures["audit_rate"] = sim["rate"]
        figures["simulated_trials"] = sim["trials"]
        figures["simulated"] = {
            f"f={f}": {k: v for k, v in d.items() if k != "curve"}
            for f, d in sim["per_faking"].items()
        }
        samples["curves"] = {f: d["curve"] for f, d in sim["per_faking"].items()}
        samples["rate"] = sim["rate"]
    if "memory" in by_part:
        mem = by_part["memory"]
        figures["memory"] = {lie: _memory_figures(trials) for lie, trials in mem["per_lie"].items()}
        honest = mem["honest"]
        figures["memory_all_honest"] = {
            "tasks": honest["tasks"],
            "extra_compute": honest["extra_compute"],
            "verdicts_against_honest": honest["verdicts_against_honest"],
        }
        figures["extra_compute_default_rate"] = honest["extra_compute"]
    if "testnet" in by_part:
        real = by_part["testnet"]
        figures["testnet_audit"] = real["audit"]
        figures["testnet_redundant"] = real["redundant"]
    figures["samples"] = samples
    return figures


def _memory_figures(trials: list[dict[str, Any]]) -> dict[str, Any]:
    caught = [t for t in trials if t["caught_at_task"] is not None]
    faked = [t["faked_until_caught"] for t in caught if t["faked_until_caught"] is not None]

    def mean(values: list[int]) -> float | None:
        return round(sum(values) / len(values), 2) if values else None

    return {
        "trials": len(trials),
        "caught": len(caught),
        "tasks_until_caught_mean": mean([t["caught_at_task"] for t in caught]),
        "liar_results_until_caught_mean": mean([t["liar_results_until_caught"] for t in caught]),
        "faked_until_caught_mean": mean(faked),
        "faked_until_caught_max": max(faked) if faked else None,
        "wrong_before_caught_mean": mean([t["wrong_before"] for t in trials]),
        "wrong_after_caught_total": sum(t["wrong_after"] for t in trials),
        "verdicts_against_honest_total": sum(t["verdicts_against_honest"] for t in trials),
        "extra_compute_mean": round(sum(t["extra_compute"] for t in trials) / len(trials), 4),
    }
