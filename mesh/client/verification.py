"""Verification modes: what a result proves before the caller gets it, and what it costs.

===============  =========================================================  =====================
mode             what a returned result proves                              extra compute
===============  =========================================================  =====================
``signature``    who answered: the worker signed this output for this task  none. Trusts the
                 on this model (the receipt). Nothing about whether the     worker with the
                 output is right.                                           answer.
``audit``        as ``signature``; and after each receipt arrives the       about ``audit_rate``
                 client draws (:mod:`mesh.client.audit`) whether to         (5% by default;
                 re-check it: the same task re-run on an independent        newcomers and
                 worker and compared (:mod:`mesh.client.compare`), or for   accused workers are
                 a language model one forward pass over its activation      audited more, see
                 commitment and sampling. An audited result is confirmed    :mod:`mesh.client.
                 or replaced; an unaudited one is not proven, but a worker  reputation`)
                 faking a share ``f`` of ``n`` results escapes with
                 probability ``(1 - audit_rate)^(f n)``, and once caught
                 it gets a verdict and this client's traffic stops.
``redundant``    a second, independent worker confirmed it: its own run     ``replicas`` runs
                 agreed within the manifest's tolerance, or for a           (2 by default), plus
                 language model its check passed. Wrong only if the         checks and tie-breaks
                 workers asked collude or lie alike.                        when they disagree
===============  =========================================================  =====================

On a disagreement the caller gets the confirmed result, or a typed error
(:class:`~mesh.errors.Disputed`, :class:`~mesh.errors.NoPeersAvailable`), never a
result known to be wrong; whoever was wrong gets a signed verdict with its
evidence (:mod:`mesh.client.verdicts`). What settles a task, checked top to
bottom each round:

Results without a commitment (classifiers, embeddings, models without a manifest):

=======================================================  ======================================
situation                                                step
=======================================================  ======================================
the client holds the model (``local_check``), not run    run it here: the reference
a reference exists                                       results agreeing with it are confirmed,
                                                         the others get verdicts; return the
                                                         first agreeing one, else fetch another
one group of >= 2 agreeing results, larger than any      return its first; verdicts against
other                                                    every result outside it (the group
                                                         are the witnesses)
``MAX_RESULTS`` results held                             :class:`Disputed`
otherwise                                                one more result from a worker not yet
                                                         asked, independent of those asked
=======================================================  ======================================

Generations (activation commitments):

=======================================================  ======================================
situation                                                step
=======================================================  ======================================
>= 2 results with identical tokens in one                confirmed without a check; results of
batch-invariant runtime class                            that class that differ are judged
otherwise, each result in turn until one is confirmed    judged (below)
none confirmed, fewer than ``MAX_RESULTS`` held          another result from a new worker,
                                                         judged
=======================================================  ======================================

Judging a generation: check answers are votes of independent checkers (a check
task on another worker, :mod:`mesh.core.checks`; the client's own check when it
holds the model, which decides alone). It is confirmed when two checkers pass
it (so that one lying checker cannot vouch alone; one when no other independent
worker exists and none failed it) and they outnumber those failing it; found wrong
when at least two fail it and they outnumber those passing it; otherwise one
more independent checker is asked (at most ``MAX_CHECKS``, else
:class:`Disputed`). Every checker on the losing side answered wrongly and gets
a ``check`` verdict; a generation found wrong gets a ``commitment`` verdict. A
check answer is one bit, cheap to fake ("pass" without running anything): that
is why one "fail" never convicts a generation and one "pass" rarely confirms it.

An ``outputs`` verdict across runtime classes (another device, dtype or torch)
needs a gross gap (:func:`mesh.client.compare.convicts`): the manifests'
tolerances were measured on CPU, so a small disagreement with another device
sets the result aside without accusing its worker.

A drawn audit that finds no independent worker (one worker serves the model)
returns the result with ``verification.note`` saying it was not checked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mesh.client.audit import DEFAULT_AUDIT_RATE, AuditDraw
from mesh.client.compare import (
    Comparison,
    Profile,
    Runtime,
    compare_results,
    convicts,
    profile_for,
    same_runtime_class,
)
from mesh.client.discovery import Discovery
from mesh.client.independence import independence_rank
from mesh.client.local_check import LocalChecker
from mesh.client.reputation import Reputation
from mesh.client.results import RunResult, Verification
from mesh.client.sender import Inputs, StreamTap, TaskSender
from mesh.client.verdicts import VerdictBook
from mesh.core.checks import make_check_inputs, read_check_answer
from mesh.core.envelope import Signed
from mesh.core.evidence import MAX_EXHIBITS, Exhibit
from mesh.core.messages import VERIFY_MODES, Task
from mesh.core.tensors import Tensor
from mesh.core.values import Values
from mesh.errors import (
    ConfigError,
    Disputed,
    MeshError,
    NoPeersAvailable,
    ProtocolError,
    VerificationError,
)

logger = logging.getLogger(__name__)

MODES = VERIFY_MODES
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 8
# Results of one task at most: the first, a re-run, two tie-breakers. More
# disagreement than that is not worth more compute: the caller gets Disputed.
MAX_RESULTS = 4
LOCAL = "local"  # confirmed_by / checked_by entry for the client's own check
# Check answers asked for one generation at most (a majority of 3 settles any one liar).
MAX_CHECKS = 5


# Passing checkers that confirm a generation, when that many independent ones exist:
# a check answer is one bit, and a lazy checker answers "pass" without running
# anything; with two, one lying checker cannot vouch alone. Checks are cheap (one
# forward pass, about 1/n of an n-token generation), so audits ask two as well.
CONFIRMING_CHECKS = 2


# A result computed by the client itself: outputs and runtime claim.
Reference = tuple[Values, Runtime]
# Signs a task: (root, inputs, params, window_s, verify, target) -> signed task.
SignTask = Callable[[bytes, Inputs, Mapping[str, int], float, str, str | None], Signed[Task]]


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """One call's verification settings (checked: build with :func:`verify_options`)."""

    mode: str = "signature"
    audit_rate: float = DEFAULT_AUDIT_RATE
    replicas: int = DEFAULT_REPLICAS


def verify_options(*, mode: str, audit_rate: float, replicas: int) -> VerifyOptions:
    """Checked options.

    Raises:
        ConfigError: an unknown mode, ``audit_rate`` outside [0, 1], ``replicas``
            outside [2, MAX_REPLICAS].
    """
    if mode not in MODES:
        raise ConfigError(f"unknown verification mode {mode!r}: use {', '.join(MODES)}")
    if not 0.0 <= audit_rate <= 1.0:
        raise ConfigError(f"audit_rate must be in [0, 1], not {audit_rate}")
    if not 2 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"replicas must be in [2, {MAX_REPLICAS}], not {replicas}")
    return VerifyOptions(mode, audit_rate, replicas)


@dataclass
class _Job:
    """One caller's task while it is being verified."""

    root: bytes
    inputs: Values
    params: dict[str, int]
    options: VerifyOptions
    deadline: float
    window_s: float
    profile: Profile
    runs: int = 0
    checks: int = 0
    asked: set[str] = field(default_factory=set)
    confirmed_by: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True, slots=True)
class _Check:
    """One check of a generation: who checked, and the signed answer when a worker did."""

    passed: bool
    reason: str
    by: str
    exhibit: Exhibit | None


class Verifier:
    """Runs tasks in a verification mode (see the module docstring).

    Args:
        sender: sends one signed task until a verified receipt comes back.
        sign: signs a task (the client's key).
        discovery: capacity records (addresses, for independence).
        reputation: this client's table of workers.
        verdicts: makes and publishes verdicts.
        draw: the audit draw.
        local: the client's own checker, or None.
        zoo_dirs: where manifests (kinds and tolerances) are found.
    """

    def __init__(
        self,
        *,
        sender: TaskSender,
        sign: SignTask,
        discovery: Discovery,
        reputation: Reputation,
        verdicts: VerdictBook,
        draw: AuditDraw,
        local: LocalChecker | None,
        zoo_dirs: tuple[Path, ...] = (),
    ) -> None:
        self._sender = sender
        self._sign = sign
        self._discovery = discovery
        self._reputation = reputation
        self._verdicts = verdicts
        self._draw = draw
        self._local = local
        self._zoo_dirs = zoo_dirs

    async def run(
        self,
        root: bytes,
        inputs: Inputs,
        params: Mapping[str, int],
        *,
        options: VerifyOptions,
        deadline: float,
        window_s: float,
        target: str | None = None,
        stream: StreamTap | None = None,
    ) -> RunResult:
        """A result of ``root`` on ``inputs``, verified as ``options.mode`` says.

        ``stream`` (mesh.client.streaming) hears the first result's partial
        answers as they come; what verification does after that result is the
        same as without it (``redundant`` has no first result to stream).

        Raises:
            ConfigError: ``redundant`` with a ``target`` (one worker cannot be two),
                or with a ``stream``.
            Disputed: workers disagree and nothing settled it.
            NoPeersAvailable: too few independent workers for ``redundant``.
            DeadlineExceeded, VerificationError, ProtocolError: as a plain send.
        """
        if options.mode == "redundant" and target is not None:
            raise ConfigError("redundant verification needs several workers: drop the target")
        if options.mode == "redundant" and stream is not None:
            raise ConfigError("redundant verification cannot stream (no result before the last)")
        values: Values = {k: v if isinstance(v, Tensor) else list(v) for k, v in inputs.items()}
        job = _Job(
            root,
            values,
            dict(params),
            options,
            deadline,
            window_s,
            profile_for(root, self._zoo_dirs),
        )
        if options.mode == "redundant":
            return await self._settle(job, await self._fetch_replicas(job))
        first = await self._fetch(job, target=target, stream=stream)
        if options.mode == "signature":
            return self._finish(job, first, checked=False)
        rate = self._reputation.audit_rate(first.worker, options.audit_rate)
        if not self._draw.audit(first.receipt.digest, rate):
            return self._finish(job, first, checked=False)
        return await self._settle(job, [first])

    # -- fetching results ------------------------------------------------------------
    async def _fetch(
        self,
        job: _Job,
        *,
        target: str | None = None,
        exclude: Collection[str] = (),
        independent_of: Collection[str] | None = None,
        on_attempt: Callable[[str], None] | None = None,
        stream: StreamTap | None = None,
    ) -> RunResult:
        task = self._sign(job.root, job.inputs, job.params, job.window_s, job.options.mode, target)
        rank = (
            None
            if independent_of is None
            else independence_rank(
                independent_of, record_of=self._discovery.record, reputation=self._reputation
            )
        )
        result = await self._sender.send(
            task,
            job.inputs,
            deadline=job.deadline,
            target=target,
            exclude=exclude,
            rank=rank,
            on_attempt=on_attempt,
            stream=stream,
        )
        job.runs += 1
        job.asked.add(result.worker)
        return result

    async def _fetch_more(self, job: _Job) -> RunResult | None:
        """One more result from a worker not asked yet; None when there is none."""
        try:
            asked = set(job.asked)
            return await self._fetch(job, exclude=asked, independent_of=asked)
        except NoPeersAvailable:
            return None

    async def _fetch_replicas(self, job: _Job) -> list[RunResult]:
        """``replicas`` results from distinct workers, sent at once."""
        count = job.options.replicas
        claimed: set[str] = set()
        found: list[RunResult | None] = [None] * count
        errors: list[MeshError] = []

        async def one(index: int) -> None:
            try:
                found[index] = await self._fetch(
                    job, exclude=claimed, independent_of=claimed, on_attempt=claimed.add
                )
            except MeshError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
        results = [r for r in found if r is not None]
        if len(results) >= 2:
            return results
        hard = [e for e in errors if not isinstance(e, NoPeersAvailable)]
        if hard:
            raise hard[0]
        raise NoPeersAvailable(
            f"redundant verification needs 2 independent workers; {len(results)} answered"
        )

    # -- settling ------------------------------------------------------------------
    async def _settle(self, job: _Job, results: list[RunResult]) -> RunResult:
        # Without a manifest, a result with an activation commitment marks a language model.
        generation = job.profile.commits or (
            job.profile.kind == "unknown"
            and any(r.receipt.message.commitment and "token_ids" in r.outputs for r in results)
        )
        if generation:
            return await self._settle_generation(job, results)
        return await self._settle_outputs(job, results)

    @staticmethod
    def _compare(profile: Profile, a: RunResult, b: RunResult | Reference) -> Comparison:
        other = (b.outputs, b.receipt.message.runtime) if isinstance(b, RunResult) else b
        return compare_results(profile, (a.outputs, a.receipt.message.runtime), other)

    async def _settle_outputs(self, job: _Job, results: list[RunResult]) -> RunResult:
        reference = await self._local_reference(job)
        while True:
            if reference is not None:
                agreeing = [r for r in results if self._compare(job.profile, r, reference).agree]
                for wrong in [r for r in results if r not in agreeing]:
                    found = self._compare(job.profile, wrong, reference)
                    note = f"recomputed locally: {found.detail}"
                    self._convict_outputs(job, wrong, agreeing, found, note, [reference[1]])
                if agreeing:
                    for good in agreeing:
                        self._reputation.confirm(good.worker)
                    job.confirmed_by += [LOCAL] + [r.worker for r in agreeing[1:]]
                    return self._finish(job, agreeing[0], checked=True)
                results = []
            else:
                winner = self._majority(job, results)
                if winner is not None:
                    for good in winner:
                        self._reputation.confirm(good.worker)
                    for wrong in [r for r in results if r not in winner]:
                        found = self._compare(job.profile, wrong, winner[0])
                        note = f"{len(winner)} independent results agree; this one: {found.detail}"
                        runtimes = [r.receipt.message.runtime for r in winner]
                        self._convict_outputs(job, wrong, winner, found, note, runtimes)
                    job.confirmed_by += [r.worker for r in winner[1:]]
                    return self._finish(job, winner[0], checked=True)
            if job.runs >= max(MAX_RESULTS, job.options.replicas + 2):
                raise Disputed(f"{job.runs} results of this task and no majority agrees")
            extra = await self._fetch_more(job)
            if extra is None:
                return self._unsettled(job, results)
            results.append(extra)

    def _majority(self, job: _Job, results: list[RunResult]) -> list[RunResult] | None:
        """The one largest group (>= 2) of agreeing results, or None."""
        groups: list[list[RunResult]] = []
        for result in results:
            for group in groups:
                if self._compare(job.profile, group[0], result).agree:
                    group.append(result)
                    break
            else:
                groups.append([result])
        groups.sort(key=len, reverse=True)
        if len(groups[0]) >= 2 and (len(groups) == 1 or len(groups[1]) < len(groups[0])):
            return groups[0]
        return None

    def _unsettled(self, job: _Job, results: list[RunResult]) -> RunResult:
        """No independent worker is left to settle ``results``."""
        if job.options.mode == "audit" and len(results) == 1 and not job.verdicts:
            job.note = "audit drawn but not done: no independent worker serves this model"
            logger.warning("%s (worker %s)", job.note, results[0].worker)
            return self._finish(job, results[0], checked=False)
        if not results:
            raise Disputed("every result of this task was wrong and no other worker is left")
        if len(results) == 1:
            raise Disputed("no independent worker is left to confirm this task's result")
        raise Disputed(
            f"{len(results)} results of this task disagree and no other independent worker "
            "is available to settle it"
        )

    async def _local_reference(self, job: _Job) -> Reference | None:
        if self._local is None or not self._local.can_check(job.root):
            return None
        try:
            found = await self._local.run(job.root, job.inputs, job.params)
        except MeshError as exc:
            logger.warning("local check failed to run: %s", exc)
            return None
        if found is None:
            return None
        job.checks += 1
        return found

    def _convict_outputs(
        self,
        job: _Job,
        wrong: RunResult,
        witnesses: list[RunResult],
        found: Comparison,
        note: str,
        runtimes: Sequence[Runtime],
    ) -> None:
        """A verdict against ``wrong``, unless the gap may be its hardware's (see compare)."""
        if not convicts(found, wrong.receipt.message.runtime, runtimes):
            # Not returned, not convicted: another device may differ by this much.
            job.note = (
                f"a result of {wrong.worker} from another runtime class differed by "
                f"{found.ratio:.3g} tolerances ({found.detail}): set aside, no verdict"
            )
            logger.warning("%s", job.note)
            return
        exhibits = [self._exhibit("witness", w, job) for w in witnesses[: MAX_EXHIBITS - 1]]
        made = self._verdicts.convict(
            self._exhibit("accused", wrong, job),
            exhibits,
            kind="outputs",
            distance=found.distance,
            note=note,
        )
        job.verdicts.append(made.verdict.digest.hex())

    @staticmethod
    def _exhibit(role: str, result: RunResult, job: _Job) -> Exhibit:
        return Exhibit(role, result.task, dict(job.inputs), result.receipt, dict(result.outputs))

    # -- generations ---------------------------------------------------------------
    async def _settle_generation(self, job: _Job, results: list[RunResult]) -> RunResult:
        tokens = Profile("generate", job.profile.manifest)
        confirmed: RunResult | None = None
        suspects = list(results)
        groups: list[list[RunResult]] = []
        for result in results:
            for group in groups:
                found = self._compare(tokens, group[0], result)
                if found.agree and found.decided:
                    group.append(result)
                    break
            else:
                groups.append([result])
        groups.sort(key=len, reverse=True)
        if len(groups[0]) >= 2:
            confirmed = groups[0][0]
            for good in groups[0]:
                self._reputation.confirm(good.worker)
            job.confirmed_by += [r.worker for r in groups[0][1:]]
            runtime = confirmed.receipt.message.runtime
            suspects = [
                r
                for r in results
                if r not in groups[0] and same_runtime_class(runtime, r.receipt.message.runtime)
            ]
        for suspect in suspects:
            if confirmed is not None and len(groups[0]) < 2:
                break  # one confirmed result is enough when none was confirmed by agreement
            valid = await self._judge(job, suspect)
            if valid is None:
                if confirmed is None:
                    return self._unsettled(job, [suspect])
                continue
            if valid and confirmed is None:
                confirmed = suspect
        while confirmed is None:
            if job.runs >= max(MAX_RESULTS, job.options.replicas + 2):
                raise Disputed(f"none of {job.runs} generations of this task passed its check")
            extra = await self._fetch_more(job)
            if extra is None:
                return self._unsettled(job, [])
            valid = await self._judge(job, extra)
            if valid is None:
                return self._unsettled(job, [extra])
            if valid:
                confirmed = extra
        return self._finish(job, confirmed, checked=True)

    async def _judge(self, job: _Job, result: RunResult) -> bool | None:
        """True: confirmed; False: found wrong (verdicts made); None: nobody could check.

        Check answers are votes of independent checkers (see the module docstring):
        the client's own check (or the result's own malformed shape) decides alone;
        otherwise a pass needs ``CONFIRMING_CHECKS`` passing checkers outnumbering
        the failing ones (fewer when no more independent checkers exist and none
        failed), a fail needs two failing checkers outnumbering the passing ones,
        and each checker on the losing side answered wrongly and gets a verdict.
        """
        needed = CONFIRMING_CHECKS
        votes: list[_Check] = []
        while True:
            trusted = next((v for v in votes if v.exhibit is None), None)
            passes = [v for v in votes if v.passed]
            fails = [v for v in votes if not v.passed]
            if trusted is not None:
                passed = trusted.passed
                break
            if len(passes) >= needed and len(passes) > len(fails):
                passed = True
                break
            if len(fails) >= 2 and len(fails) > len(passes):
                passed = False
                break
            if len(votes) >= MAX_CHECKS:
                raise Disputed(
                    f"{len(passes)} checker(s) pass and {len(fails)} fail the generation of "
                    f"{result.worker}: no majority"
                )
            vote = await self._check(job, result, avoid={result.worker, *(v.by for v in votes)})
            if vote is None:
                if not votes:
                    return None
                if passes and not fails:
                    # Every independent worker there is passed it: as confirmed as it gets.
                    job.note = f"confirmed by {len(passes)} checker(s): no more independent ones"
                    passed = True
                    break
                raise Disputed(
                    f"{len(passes)} checker(s) pass and {len(fails)} fail the generation of "
                    f"{result.worker}, and no further independent checker is available"
                )
            votes.append(vote)
        right = [v for v in votes if v.passed == passed]
        for wrong in [v for v in votes if v.passed != passed]:
            self._convict_checker(job, result, wrong, right)
        if passed:
            self._reputation.confirm(result.worker)
            job.confirmed_by += [v.by for v in right]
            return True
        self._convict_generation(job, result, right)
        return False

    async def _check(self, job: _Job, result: RunResult, *, avoid: set[str]) -> _Check | None:
        """One check of ``result``: here when the client holds the model, else by a worker."""
        tokens = result.outputs.get("token_ids")
        receipt = result.receipt.message
        if not isinstance(tokens, Tensor) or tokens.dtype != "int64" or len(tokens.shape) != 1:
            return _Check(False, "the result carries no int64 token_ids vector", LOCAL, None)
        if self._local is not None and self._local.can_check(job.root):
            dtype = receipt.runtime.get("dtype")
            try:
                local = await self._local.check_generation(
                    job.root,
                    job.inputs,
                    job.params,
                    tokens,
                    receipt.commitment,
                    dtype if isinstance(dtype, str) else "",
                )
            except MeshError as exc:
                logger.warning("local check failed to run: %s", exc)
                local = None
            if local is not None:
                job.checks += 1
                return _Check(local[0], local[1], LOCAL, None)
        inputs = make_check_inputs(job.inputs, result.outputs, receipt)
        task = self._sign(job.root, inputs, job.params, job.window_s, job.options.mode, None)
        rank = independence_rank(
            avoid, record_of=self._discovery.record, reputation=self._reputation
        )
        try:
            answer = await self._sender.send(
                task, inputs, deadline=job.deadline, exclude=avoid, rank=rank
            )
        except (NoPeersAvailable, ProtocolError) as exc:
            logger.info("no worker checked the generation of %s: %s", result.worker, exc)
            return None
        job.checks += 1
        try:
            passed, reason = read_check_answer(answer.outputs)
        except VerificationError as exc:
            logger.warning(
                "worker %s answered a check with no check answer: %s", answer.worker, exc
            )
            return None
        exhibit = Exhibit("checker", task, inputs, answer.receipt, dict(answer.outputs))
        return _Check(passed, reason, answer.worker, exhibit)

    def _convict_generation(self, job: _Job, result: RunResult, checks: list[_Check]) -> None:
        notes = "; ".join(f"check by {c.by} failed: {c.reason}" for c in checks)
        made = self._verdicts.convict(
            self._exhibit("accused", result, job),
            [c.exhibit for c in checks if c.exhibit is not None],
            kind="commitment",
            distance=float("inf"),
            note=notes,
        )
        job.verdicts.append(made.verdict.digest.hex())

    def _convict_checker(
        self, job: _Job, result: RunResult, wrong: _Check, right: list[_Check]
    ) -> None:
        assert wrong.exhibit is not None  # trusted checks decide; they are never outvoted
        accused = dataclasses.replace(wrong.exhibit, role="accused")
        others = [self._exhibit("witness", result, job)]
        others += [c.exhibit for c in right if c.exhibit is not None][: MAX_EXHIBITS - 2]
        said, truth = ("pass", "fails") if wrong.passed else ("fail", "passes")
        judges = ", ".join(c.by for c in right)
        note = f"answered {said} ({wrong.reason or 'no reason'}); the generation {truth} its "
        note += f"check by {judges}"
        made = self._verdicts.convict(accused, others, kind="check", distance=1.0, note=note)
        job.verdicts.append(made.verdict.digest.hex())

    # -- the answer ------------------------------------------------------------------
    @staticmethod
    def _finish(job: _Job, result: RunResult, *, checked: bool) -> RunResult:
        report = Verification(
            mode=job.options.mode,
            checked=checked,
            confirmed_by=tuple(job.confirmed_by),
            extra_runs=max(0, job.runs - 1),
            checks=job.checks,
            verdicts=tuple(job.verdicts),
            note=job.note,
        )
        return dataclasses.replace(result, verification=report)
