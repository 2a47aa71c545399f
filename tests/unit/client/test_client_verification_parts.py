"""The pure parts of verification: comparison, audit draws, reputation rules, independence,
the client's data directory and the lying node's alterations."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from mesh.client.audit import DEFAULT_AUDIT_RATE, AuditDraw
from mesh.client.compare import Profile, compare_results, profile_for, same_runtime_class
from mesh.client.independence import independence_rank, network_prefix
from mesh.client.reputation import (
    ACCUSED_RATE,
    CLEARING_CHECKS,
    MAX_CLEARANCES,
    NEWCOMER_CHECKS,
    NEWCOMER_RATE,
    Reputation,
)
from mesh.client.verification import verify_options
from mesh.core.checks import check_answer, read_check_answer
from mesh.core.messages import CapacityRecord
from mesh.core.tensors import Tensor
from mesh.errors import ConfigError
from mesh.files.client_state import ClientStore
from mesh.node.lies import Lie, lazy_outputs, parse_lie, perturb_outputs
from mesh.runtime.manifest import Manifest, Tolerance

pytestmark = pytest.mark.unit

CPU = {"device": "cpu", "dtype": "float32", "torch": "2.13", "batch_invariant": True}


def _floats(rows: list[list[float]], dtype: str = "float32") -> Tensor:
    flat = [v for row in rows for v in row]
    return Tensor(dtype, (len(rows), len(rows[0])), struct.pack(f"<{len(flat)}f", *flat))


def _profile(kind: str, eps: float) -> Profile:
    manifest = Manifest(
        name="m",
        kind=kind,
        folder=Path("."),
        architecture_file="",
        config={},
        weights={},
        inputs={},
        outputs={},
        tolerances={"float32": Tolerance(output_abs=eps), "bfloat16": Tolerance(output_abs=0.1)},
    )
    return Profile(kind, manifest)


def _agree(profile: Profile, a: Any, b: Any, ra: Any = CPU, rb: Any = CPU) -> bool:
    return compare_results(profile, (a, ra), (b, rb)).agree


# -- comparison ---------------------------------------------------------------------
def test_classifier_logits_agree_within_tolerance_and_on_the_argmax() -> None:
    profile = _profile("classify", 0.01)
    a = {"logits": _floats([[1.0, 2.0, 0.5]])}
    assert _agree(profile, a, {"logits": _floats([[1.005, 2.004, 0.5]])})
    assert not _agree(profile, a, {"logits": _floats([[1.0, 2.02, 0.5]])})  # over eps
    # Within eps everywhere, and the argmax flips only where the top two tie within 2 eps.
    tied = {"logits": _floats([[2.0, 2.005, 0.0]])}
    assert _agree(profile, tied, {"logits": _floats([[2.0, 1.998, 0.0]])})
    assert not _agree(profile, a, {"logits": _floats([[1.0, 2.0, 0.5], [0, 0, 0]])})  # shape
    assert not _agree(profile, a, {"other": _floats([[1.0, 2.0, 0.5]])})  # names
    # A worker naming a loose dtype does not loosen the comparison for a float32 run...
    assert not _agree(profile, a, {"logits": _floats([[1.0, 2.05, 0.5]])}, rb={"dtype": "x"})
    # ...but an honest bfloat16 run is compared with the bfloat16 tolerance.
    bf16 = {**CPU, "dtype": "bfloat16"}
    assert _agree(profile, a, {"logits": _floats([[1.0, 2.05, 0.5]])}, rb=bf16)
    nan = {"logits": _floats([[math.nan, 2.0, 0.5]])}
    assert not _agree(profile, a, nan)


def test_embeddings_agree_by_the_cosine_bound_the_tolerance_implies() -> None:
    eps, d = 0.01, 4
    profile = _profile("embed", eps)
    unit = [0.5, 0.5, 0.5, 0.5]
    a = {"e": _floats([unit])}
    shifted = [v + eps for v in unit[:2]] + [v - eps for v in unit[2:]]
    assert _agree(profile, a, {"e": _floats([shifted])})  # every element within eps
    rotated = [0.5, 0.5, -0.5, 0.5]
    assert not _agree(profile, a, {"e": _floats([rotated])})
    scaled = [2 * v for v in unit]  # same direction, wrong length
    assert not _agree(profile, a, {"e": _floats([scaled])})
    assert not _agree(profile, a, {"e": _floats([[0.0] * d])})
    found = compare_results(profile, (a, CPU), ({"e": _floats([shifted])}, CPU))
    assert found.distance <= d * eps * eps / 2 + 1e-9


def test_generations_compare_exactly_only_within_one_batch_invariant_class() -> None:
    profile = Profile("generate", None)
    tokens = {"token_ids": Tensor("int64", (2,), struct.pack("<2q", 1, 2)), "text": ["ab"]}
    other = {"token_ids": Tensor("int64", (2,), struct.pack("<2q", 1, 3)), "text": ["ac"]}
    same = compare_results(profile, (tokens, CPU), (tokens, {**CPU, "batch_size": 7}))
    assert same.agree and same.decided
    differ = compare_results(profile, (tokens, CPU), (other, CPU))
    assert differ.decided and not differ.agree
    gpu = {**CPU, "device": "NVIDIA H100", "batch_invariant": False}
    undecided = compare_results(profile, (tokens, CPU), (tokens, gpu))
    assert not undecided.decided
    assert not same_runtime_class(gpu, gpu)  # not batch-invariant: not one class of bytes


def test_models_without_a_manifest_compare_exactly() -> None:
    profile = profile_for(bytes(32))
    assert profile.kind == "unknown" and profile.manifest is None
    a = {"y": _floats([[1.0]])}
    assert _agree(profile, a, {"y": _floats([[1.0]])})
    assert not _agree(profile, a, {"y": _floats([[1.0000001]])})


def test_zoo_profiles_know_their_kinds() -> None:
    from mesh.runtime.zoo import find_manifest

    for name, kind in (("tiny-mlp", "classify"), ("tiny-gpt", "generate")):
        root = find_manifest(name).model_root
        assert root is not None and profile_for(root).kind == kind


# -- audit draws ----------------------------------------------------------------------
def test_audit_draws_are_reproducible_keyed_and_uniform() -> None:
    secret = bytes(range(32))
    draw = AuditDraw(secret)
    digests = [i.to_bytes(32, "big") for i in range(20_000)]
    values = [draw.draw(d) for d in digests]
    assert values == [AuditDraw(secret).draw(d) for d in digests]
    assert values != [AuditDraw(bytes(32)).draw(d) for d in digests]
    assert all(0.0 <= v < 1.0 for v in values)
    share = sum(draw.audit(d, DEFAULT_AUDIT_RATE) for d in digests) / len(digests)
    assert abs(share - DEFAULT_AUDIT_RATE) < 0.005  # 20k draws: sd 0.0015
    assert not any(draw.audit(d, 0.0) for d in digests[:100])
    assert all(draw.audit(d, 1.0) for d in digests[:100])
    loaded: list[int] = []
    lazy = AuditDraw(lambda: loaded.append(1) or secret)
    assert not loaded
    assert lazy.draw(digests[0]) == values[0] and loaded == [1]


def test_the_default_rate_meets_the_detection_aim() -> None:
    assert 1 - (1 - DEFAULT_AUDIT_RATE) ** 60 >= 0.95
    assert DEFAULT_AUDIT_RATE >= 1 - 0.05 ** (1 / 60)


def test_verify_options_refuse_what_does_not_exist() -> None:
    assert verify_options(mode="audit", audit_rate=0.1, replicas=3).replicas == 3
    for bad in (
        {"mode": "trust", "audit_rate": 0.05, "replicas": 2},
        {"mode": "audit", "audit_rate": -0.1, "replicas": 2},
        {"mode": "redundant", "audit_rate": 0.05, "replicas": 1},
        {"mode": "redundant", "audit_rate": 0.05, "replicas": 99},
    ):
        with pytest.raises(ConfigError):
            verify_options(**bad)  # type: ignore[arg-type]


# -- reputation -----------------------------------------------------------------------
def test_newcomers_are_audited_more_until_they_have_a_history() -> None:
    rep = Reputation()
    assert rep.audit_rate("w", 0.05) == NEWCOMER_RATE
    for _ in range(NEWCOMER_CHECKS):
        rep.confirm("w")
    assert rep.audit_rate("w", 0.05) == 0.05
    assert rep.audit_rate("w", 0.0) == 0.0  # no audits asked: none at all


def test_caught_once_is_excluded_and_hearsay_about_it_changes_nothing() -> None:
    rep = Reputation()
    rep.convict("w", "outputs: wrong", verdict=b"\x01" * 32)
    assert rep.excluded("w") and rep.caught() == {"w": "outputs: wrong"}
    assert not rep.accuse("w", b"a" * 32)


def test_hearsay_raises_audits_until_own_checks_clear_it_and_never_excludes() -> None:
    rep = Reputation()
    for _ in range(NEWCOMER_CHECKS):
        rep.confirm("w")
    assert rep.accuse("w", b"a" * 32)
    assert not rep.excluded("w") and rep.audit_rate("w", 0.05) == ACCUSED_RATE
    assert not rep.accuse("w", b"a" * 32)  # one accuser counts once
    assert not rep.accuse("w", b"b" * 32)  # already under watch
    for _ in range(CLEARING_CHECKS):
        rep.confirm("w")
    assert rep.audit_rate("w", 0.05) == 0.05
    assert rep.record("w").cleared == 1  # type: ignore[union-attr]


def test_any_number_of_sybil_accusers_costs_a_bounded_number_of_checks() -> None:
    rep = Reputation()
    extra_checks = 0
    for n in range(1000):  # a thousand fresh identities accuse one honest worker
        rep.accuse("w", n.to_bytes(32, "big"))
        while rep.audit_rate("w", 0.05) > 0.05 or rep.record("w").confirmed < NEWCOMER_CHECKS:  # type: ignore[union-attr]
            rep.confirm("w")
            extra_checks += 1
    assert not rep.excluded("w")
    assert extra_checks <= NEWCOMER_CHECKS + MAX_CLEARANCES * CLEARING_CHECKS
    assert rep.audit_rate("w", 0.05) == 0.05


def test_the_table_persists_in_the_data_dir(tmp_path: Path) -> None:
    store = ClientStore(tmp_path / "client")
    rep = Reputation(store)
    rep.confirm("good")
    rep.convict("bad", "commitment: fails", verdict=bytes(32))
    rep.accuse("meh", b"x" * 32)
    rep.save()
    again = Reputation(ClientStore(tmp_path / "client"))
    assert again.excluded("bad") and not again.excluded("good")
    assert again.record("good").confirmed == 1  # type: ignore[union-attr]
    assert again.accused() == {"meh": [(b"x" * 32).hex()]}
    assert (tmp_path / "client" / "reputation.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "client" / "reputation.json").write_text("[1]")
    with pytest.raises(ConfigError):
        Reputation(ClientStore(tmp_path / "client"))


def test_the_store_writes_nothing_until_asked_and_keeps_one_secret(tmp_path: Path) -> None:
    store = ClientStore(tmp_path / "c")
    assert store.read_reputation() is None and store.verdict_files() == []
    assert not (tmp_path / "c").exists()
    secret = store.audit_secret()
    assert len(secret) == 32 and store.audit_secret() == secret
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    path = store.write_verdict("ab", b"data")
    assert path.read_bytes() == b"data" and store.verdict_files() == [path]
    (tmp_path / "c" / "audit.key").write_bytes(b"short")
    with pytest.raises(ConfigError):
        store.audit_secret()


# -- independence ---------------------------------------------------------------------
def _record(*addrs: str) -> CapacityRecord:
    return CapacityRecord(
        peer=os.urandom(32),
        addrs=addrs,
        models=(),
        model_names=(),
        device="cpu",
        memory_free_mb=0,
        queue_depth=0,
        queue_capacity=8,
        throughput_milli=0,
        price_micro=0,
        region="",
        created_ms=0,
        expires_ms=1,
    )


def test_network_prefixes() -> None:
    assert network_prefix("/ip4/10.1.2.3/tcp/4001") == "ip4:10.1.2"
    assert network_prefix("/ip6/2001:db8:1:2::5/tcp/1") == "ip6:2001:0db8:0001"
    assert network_prefix("/dns4/Node.Example.org/tcp/1") == "dns:node.example.org"
    assert network_prefix("/memory/x") is None and network_prefix("nonsense") is None


def test_checkers_on_another_network_and_with_a_history_come_first() -> None:
    records = {
        "first": _record("/ip4/10.1.2.3/tcp/1"),
        "same-net": _record("/ip4/10.1.2.9/tcp/1"),
        "other-net": _record("/ip4/192.168.7.1/tcp/1"),
        "unknown": None,
        "other-net-known": _record("/ip4/172.16.0.1/tcp/1"),
    }
    rep = Reputation()
    for _ in range(NEWCOMER_CHECKS):
        rep.confirm("other-net-known")
    rank = independence_rank(["first"], record_of=records.get, reputation=rep)
    order = sorted(["same-net", "other-net", "unknown", "other-net-known"], key=rank)
    assert order == ["other-net-known", "other-net", "unknown", "same-net"]


# -- lying nodes ----------------------------------------------------------------------
def test_lie_kinds_parse_or_are_refused() -> None:
    assert parse_lie("") is None
    assert parse_lie("perturb") == Lie("perturb")
    assert parse_lie("lazy") == Lie("lazy")
    assert parse_lie("rate:0.05") == Lie("perturb", 0.05)
    for bad in ("rate:0", "rate:1.5", "rate:x", "sometimes", "rate"):
        with pytest.raises(ConfigError):
            parse_lie(bad)


def test_perturbed_outputs_fail_every_comparison_and_flip_check_answers() -> None:
    logits = {"logits": _floats([[1.0, 2.0, 0.5]])}
    assert not _agree(_profile("classify", 0.1), logits, perturb_outputs(logits))
    ids = Tensor("int64", (3,), struct.pack("<3q", 1, 2, 256))
    altered = perturb_outputs({"token_ids": ids, "text": ["abc"]})
    assert struct.unpack("<3q", altered["token_ids"].data) == (0, 3, 257)  # type: ignore[union-attr]
    assert altered["text"] == ["cba~"]
    assert read_check_answer(perturb_outputs(check_answer(True))) == (False, "perturbed")
    assert read_check_answer(perturb_outputs(check_answer(False, "x")))[0]
    bf = Tensor("bfloat16", (1,), b"\x80\x3f")
    assert perturb_outputs({"b": bf})["b"] != bf


def test_lazy_outputs_have_the_right_shapes_and_nothing_in_them() -> None:
    x = {"x": Tensor("float32", (3, 32), bytes(3 * 32 * 4))}
    out = lazy_outputs("tiny-mlp", x, {})
    assert out["logits"] == Tensor("float32", (3, 10), bytes(3 * 10 * 4))
    gen = lazy_outputs("tiny-gpt", {"prompt": ["hi"]}, {"max_tokens": 5})
    assert gen["token_ids"] == Tensor("int64", (5,), bytes(40))
    assert lazy_outputs("not-in-the-zoo", x, {}) == {}


def test_across_runtime_classes_only_a_gross_gap_convicts() -> None:
    from mesh.client.compare import GROSS_FACTOR, convicts

    profile = _profile("classify", 0.01)
    a = {"logits": _floats([[1.0, 2.0, 0.5]])}
    near = {"logits": _floats([[1.0, 2.03, 0.5]])}  # 3 tolerances off
    far = perturb_outputs(a)
    gpu = {**CPU, "device": "NVIDIA H200", "cuda": "12.8"}
    small = compare_results(profile, (near, gpu), (a, CPU))
    assert not small.agree and small.ratio == pytest.approx(3.0)
    assert convicts(small, CPU, [CPU])  # one class: any disagreement is proof
    assert not convicts(small, gpu, [CPU])  # another device: could be the hardware
    gross = compare_results(profile, (far, gpu), (a, CPU))
    assert gross.ratio > GROSS_FACTOR and convicts(gross, gpu, [CPU])
    exact = compare_results(profile_for(bytes(32)), (a, gpu), (near, CPU))
    assert exact.ratio == math.inf and convicts(exact, gpu, [CPU])
    assert not convicts(compare_results(profile, (a, gpu), (a, CPU)), gpu, [CPU])
