"""``mesh verify VERDICT`` recomputes with the real zoo models: true verdicts hold, false fail.

Verdict files are built here from real runs of tiny-mlp and tiny-gpt (on CPU),
with receipts signed by throwaway workers, exactly as a client builds them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from runtime_models import loaded

from mesh.cli import main as mesh_main
from mesh.cli.verdict_check import VerdictFailure, check_verdict_file
from mesh.core import Identity, Signed, Tensor, Values, make_receipt, sign_message, values_hash
from mesh.core.checks import check_answer, make_check_inputs
from mesh.core.evidence import Evidence, Exhibit, VerdictFile
from mesh.core.messages import Receipt, Task, Verdict
from mesh.core.receipts import ZERO_HASH
from mesh.node.lies import perturb_outputs
from mesh.runtime.registry import LoadedModel

pytestmark = pytest.mark.unit

CLIENT = Identity.from_seed(bytes([11]) * 32)
WORKERS = [Identity.from_seed(bytes([20 + i]) * 32) for i in range(4)]
NOW = 1_750_000_000_000
PARAMS = {"seed": 3, "max_tokens": 12, "temperature_milli": 900, "top_k": 30}


def _exhibit(
    role: str,
    model: LoadedModel,
    worker: Identity,
    inputs: Values,
    outputs: Values,
    params: dict[str, int],
    nonce: int,
    commitment: bytes = b"",
) -> Exhibit:
    task = sign_message(
        CLIENT,
        Task(
            client=CLIENT.public_key,
            nonce=bytes([nonce]) * 16,
            created_ms=NOW,
            expires_ms=NOW + 60_000,
            model_root=model.model_root,
            input_hash=values_hash(inputs),
            params=params,
            verify="audit",
            target=b"",
        ),
    )
    receipt = make_receipt(
        worker,
        task_id=task.digest,
        client=CLIENT.public_key,
        seq=0,
        prev=ZERO_HASH,
        model_root=model.model_root,
        runtime=model.runtime_claim(1),
        output_hash=values_hash(outputs),
        started_ms=NOW,
        finished_ms=NOW + 3,
        commitment=commitment,
    )
    return Exhibit(role, task, inputs, receipt, outputs)


def _file(kind: str, model: LoadedModel, evidence: Evidence) -> bytes:
    accused: Signed[Receipt] = evidence.accused.receipt
    verdict = Verdict(
        auditor=CLIENT.public_key,
        worker=accused.message.worker,
        task_id=accused.message.task_id,
        receipt_digest=accused.digest,
        model_root=model.model_root,
        agree=False,
        kind=kind,
        distance_micro=0,
        evidence=evidence.digest(),
        created_ms=NOW,
    )
    return VerdictFile(sign_message(CLIENT, verdict), evidence).encode()


def _mlp_file(*, accused_lies: bool) -> bytes:
    model = loaded("tiny-mlp")
    values = [0.1 * (i % 7) - 0.3 for i in range(64)]
    x: Values = {"x": Tensor("float32", (2, 32), struct.pack("<64f", *values))}
    (honest,) = model.run_batch([(x, {})])
    wrong = perturb_outputs(honest.outputs)
    accused_out = wrong if accused_lies else honest.outputs
    witness_out = honest.outputs if accused_lies else wrong
    evidence = Evidence(
        (
            _exhibit("accused", model, WORKERS[0], x, accused_out, {}, 1),
            _exhibit("witness", model, WORKERS[1], x, witness_out, {}, 2),
        ),
        "test",
    )
    return _file("outputs", model, evidence)


def test_a_true_outputs_verdict_holds_when_recomputed() -> None:
    report = check_verdict_file(_mlp_file(accused_lies=True))
    assert report.recomputed
    text = "\n".join(report.lines)
    assert "recomputed tiny-mlp on cpu/float32" in text and "1 of 1 witness" in text


def test_a_false_outputs_verdict_fails_when_recomputed_but_passes_without_the_model() -> None:
    data = _mlp_file(accused_lies=False)
    with pytest.raises(VerdictFailure, match="agree with it"):
        check_verdict_file(data)
    # Signatures and bindings hold: only the model can tell, and the output says so.
    report = check_verdict_file(data, recompute=False)
    assert not report.recomputed and "not recomputed" in report.lines[-1]


def _generation() -> tuple[LoadedModel, Values, Values, bytes]:
    model = loaded("tiny-gpt")
    prompt: Values = {"prompt": ["verdicts are checked"]}
    (out,) = model.run_batch([(prompt, PARAMS)])
    return model, prompt, out.outputs, out.commitment


def test_a_commitment_verdict_holds_only_against_a_wrong_generation() -> None:
    model, prompt, outputs, commitment = _generation()
    checks: list[Exhibit] = []
    for number, worker in enumerate(WORKERS[1:3]):
        wrong = perturb_outputs(outputs)
        inputs = make_check_inputs(prompt, wrong, _receipt(model, commitment))
        checks.append(
            _exhibit(
                "checker", model, worker, inputs, check_answer(False, "x"), PARAMS, 10 + number
            )
        )
    lying = _exhibit(
        "accused", model, WORKERS[0], prompt, perturb_outputs(outputs), PARAMS, 1, commitment
    )
    report = check_verdict_file(_file("commitment", model, Evidence((lying, *checks))))
    assert "fails its check" in report.lines[-1]
    honest = _exhibit("accused", model, WORKERS[0], prompt, outputs, PARAMS, 2, commitment)
    with pytest.raises(VerdictFailure, match="passes its check"):
        check_verdict_file(_file("commitment", model, Evidence((honest,))))


def test_a_check_verdict_holds_only_against_a_wrong_answer() -> None:
    model, prompt, outputs, commitment = _generation()
    generation = _exhibit("witness", model, WORKERS[0], prompt, outputs, PARAMS, 1, commitment)
    inputs = make_check_inputs(prompt, outputs, generation.receipt.message)
    wrong_answer = _exhibit(
        "accused", model, WORKERS[1], inputs, check_answer(False, "no"), PARAMS, 2
    )
    report = check_verdict_file(_file("check", model, Evidence((wrong_answer, generation))))
    assert "accused answered fail; the checked generation passes" in report.lines[-1]
    right_answer = _exhibit("accused", model, WORKERS[1], inputs, check_answer(True), PARAMS, 3)
    with pytest.raises(VerdictFailure, match="as the accused checker did"):
        check_verdict_file(_file("check", model, Evidence((right_answer, generation))))


def _receipt(model: LoadedModel, commitment: bytes) -> Receipt:
    return make_receipt(
        WORKERS[0],
        task_id=bytes(32),
        client=CLIENT.public_key,
        seq=0,
        prev=ZERO_HASH,
        model_root=model.model_root,
        runtime=model.runtime_claim(1),
        output_hash=bytes(32),
        started_ms=NOW,
        finished_ms=NOW,
        commitment=commitment,
    ).message


def test_the_command_line_says_what_it_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.verdict"
    path.write_bytes(_mlp_file(accused_lies=True))
    assert mesh_main(["verify", str(path), "--no-recompute"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK verdict") and "checked without the model" in out
    assert mesh_main(["verify", str(path), "--no-recompute", "--require-recompute"]) == 1
    assert mesh_main(["verify", str(path), "--task", str(path)]) == 1
    data = bytearray(path.read_bytes())
    data[-30] ^= 1
    path.write_bytes(bytes(data))
    assert mesh_main(["verify", str(path), "--no-recompute"]) == 1
    assert "FAIL" in capsys.readouterr().err
