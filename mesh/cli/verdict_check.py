"""``mesh verify VERDICT``: check a verdict file offline, recomputing where the model is here.

Two levels, and the output says which ones ran:

1. **Without the model** (always): the verdict's signature, that the evidence
   hashes to the verdict's ``evidence`` field, every receipt's signature and its
   binding to its task and outputs, that the exhibits answer one question (model,
   inputs, params) and that witnesses and checkers are other workers than the
   accused (:func:`mesh.core.evidence.verify_verdict_file`). This proves the
   accused signed the judged output, and what the others signed; not who is right.
2. **With the model** (when its zoo entry pins the verdict's model_root and the
   weights load here, on CPU): ``outputs`` verdicts run the task again and
   compare (the accused must disagree with the recomputation); ``commitment``
   verdicts run the commitment and sampling check on the accused generation (it
   must fail); ``check`` verdicts run the check the accused answered (its answer
   must be the wrong one).

Exit 0 when everything that ran holds (each line says what ran), 1 with
``FAIL <reason>`` on stderr otherwise; ``--require-recompute`` also fails when
the model is not available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.client.compare import Profile, compare_results, profile_for
from mesh.core.checks import parse_check, read_check_answer
from mesh.core.evidence import VerdictFile, decode_verdict_file, verify_verdict_file
from mesh.core.identity import peer_id_from_public_key
from mesh.core.values import Values
from mesh.errors import CommitmentMismatch, InvalidInput, MeshError, ModelError

if TYPE_CHECKING:
    from mesh.runtime.registry import LoadedModel


class VerdictFailure(Exception):
    """The verdict file does not hold; the message says why."""


@dataclass(frozen=True)
class VerdictReport:
    """What was checked: one line per step, and whether the model was used."""

    lines: list[str]
    recomputed: bool


def check_verdict_file(
    data: bytes, *, zoo_dirs: tuple[Path, ...] = (), recompute: bool = True
) -> VerdictReport:
    """Check a verdict file (see the module docstring).

    Raises:
        VerdictFailure: something does not hold.
    """
    try:
        vf = decode_verdict_file(data)
        verify_verdict_file(vf)
    except MeshError as exc:
        raise VerdictFailure(f"the verdict file does not hold: {exc}") from exc
    verdict = vf.verdict.message
    exhibits = vf.evidence.exhibits
    lines = [
        f"OK verdict {vf.verdict.digest.hex()[:16]} by {_peer(verdict.auditor)} against "
        f"{_peer(verdict.worker)}: {verdict.kind}, "
        f"{'confirms' if verdict.agree else 'finds wrong'} task {verdict.task_id.hex()[:8]}",
        f"  note: {vf.evidence.note}" if vf.evidence.note else "  note: (none)",
        f"  checked without the model: the verdict's signature and evidence hash; "
        f"{len(exhibits)} signed result(s) (signatures, task bindings, output hashes); "
        "all answer one question (model, inputs, params); witnesses and checkers are "
        "other workers than the accused",
    ]
    if not recompute:
        lines.append("  not recomputed (--no-recompute): who is right was not checked here")
        return VerdictReport(lines, False)
    profile = profile_for(verdict.model_root, zoo_dirs)
    model = _load(profile)
    if isinstance(model, str):
        lines.append(
            f"  not recomputed: {model}; the evidence is consistent, but this machine cannot "
            "say who is right"
        )
        return VerdictReport(lines, False)
    lines += _recompute(vf, profile, model)
    return VerdictReport(lines, True)


def _peer(key: bytes) -> str:
    return peer_id_from_public_key(key)


def _load(profile: Profile) -> LoadedModel | str:
    if profile.manifest is None:
        return "the model is not in a zoo here (no manifest pins its root)"
    from mesh.runtime.device import configure_determinism
    from mesh.runtime.registry import load_model

    configure_determinism()
    try:
        return load_model(profile.manifest, device="cpu")
    except MeshError as exc:
        return f"{profile.manifest.name} does not load here ({exc})"


def _recompute(vf: VerdictFile, profile: Profile, model: LoadedModel) -> list[str]:
    verdict = vf.verdict.message
    accused = vf.evidence.accused
    where = f"{model.name} on cpu/{model.dtype}"
    if verdict.kind == "outputs":
        return _recompute_outputs(vf, profile, model, where)
    if verdict.kind == "commitment":
        receipt = accused.receipt.message
        passed, reason = _verify(
            model,
            accused.inputs,
            dict(accused.task.message.params),
            accused.outputs,
            receipt.commitment,
            receipt.runtime.get("dtype"),
        )
        if passed:
            raise VerdictFailure(f"recomputed {where}: the generation passes its check here")
        return [f"  recomputed {where}: the accused generation fails its check: {reason}"]
    try:
        request = parse_check(accused.inputs)
    except InvalidInput as exc:
        raise VerdictFailure(f"the accused answered no valid check: {exc}") from exc
    if request is None:
        raise VerdictFailure("the accused exhibit is not a check")
    passed, reason = _verify(
        model,
        request.inputs,
        dict(accused.task.message.params),
        {"token_ids": request.token_ids},
        request.commitment,
        request.dtype,
    )
    answered, _ = read_check_answer(accused.outputs)
    if answered == passed:
        raise VerdictFailure(
            f"recomputed {where}: the check answers {'pass' if passed else 'fail'} here, "
            "as the accused checker did"
        )
    said = "pass" if answered else "fail"
    truth = "passes" if passed else f"fails ({reason})"
    return [f"  recomputed {where}: the accused answered {said}; the checked generation {truth}"]


def _recompute_outputs(
    vf: VerdictFile, profile: Profile, model: LoadedModel, where: str
) -> list[str]:
    accused = vf.evidence.accused
    params = dict(accused.task.message.params)
    try:
        model.validate(accused.inputs, params)
        local = model.run_batch([(accused.inputs, params)])[0].outputs
    except MeshError as exc:
        raise VerdictFailure(f"the task does not run here: {exc}") from exc
    runtime = model.runtime_claim(1)
    found = compare_results(
        profile, (accused.outputs, accused.receipt.message.runtime), (local, runtime)
    )
    if found.agree:
        raise VerdictFailure(
            f"recomputed {where}: the accused's outputs agree with it ({found.detail})"
        )
    witnesses = [e for e in vf.evidence.exhibits if e.role == "witness"]
    agreeing = sum(
        compare_results(profile, (w.outputs, w.receipt.message.runtime), (local, runtime)).agree
        for w in witnesses
    )
    return [
        f"  recomputed {where}: the accused's outputs differ ({found.detail}); "
        f"{agreeing} of {len(witnesses)} witness(es) agree with the recomputation"
    ]


def _verify(
    model: LoadedModel,
    inputs: Values,
    params: dict[str, int],
    outputs: Values,
    commitment: bytes,
    dtype: object,
) -> tuple[bool, str]:
    """The commitment and sampling check of a generation, run here: (passed, reason)."""
    from mesh.runtime.commitment import verify_task_outputs

    try:
        tolerance = model.manifest.tolerance(
            dtype if isinstance(dtype, str) and dtype else model.dtype, model.dtype
        )
    except ModelError:
        tolerance = model.manifest.tolerance(model.dtype)
    try:
        verify_task_outputs(model, inputs, params, outputs, commitment, tolerance=tolerance)
    except CommitmentMismatch as exc:
        return False, str(exc)
    return True, ""
