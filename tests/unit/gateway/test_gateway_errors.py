"""The mesh's errors map to OpenAI-shaped HTTP errors; API keys and listen addresses."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

import mesh.errors
from mesh.errors import (
    BadSignature,
    Busy,
    CommitmentMismatch,
    ConfigError,
    DeadlineExceeded,
    Expired,
    InternalError,
    InvalidInput,
    KeyFileError,
    MalformedMessage,
    MeshError,
    ModelError,
    NetworkError,
    NoPeersAvailable,
    OutputMismatch,
    PeerUnavailable,
    ProtocolError,
    Replayed,
    TaskMismatch,
    TooLarge,
    UnknownModel,
    VerificationError,
)
from mesh.gateway.auth import ApiKeys, load_api_keys
from mesh.gateway.config import GatewayConfig, parse_listen
from mesh.gateway.errors import ApiError, from_mesh_error

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidInput("bad"), 400, "invalid_input"),
        (TooLarge("big"), 400, "too_large"),
        (UnknownModel("?"), 404, "model_not_found"),
        (ModelError("?"), 404, "model_not_found"),
        (Busy(retry_after_ms=1500), 429, "mesh_busy"),
        (VerificationError("x"), 502, "verification_failed"),
        (OutputMismatch("x"), 502, "verification_failed"),
        (TaskMismatch("x"), 502, "verification_failed"),
        (CommitmentMismatch("x"), 502, "verification_failed"),
        (InternalError("x"), 502, "worker_failed"),
        (MalformedMessage("x"), 502, "task_refused"),
        (BadSignature("x"), 502, "task_refused"),
        (Expired("x"), 502, "task_refused"),
        (Replayed("x"), 502, "task_refused"),
        (ProtocolError("x"), 502, "peer_error"),
        (NoPeersAvailable("x"), 503, "no_peers"),
        (PeerUnavailable("x"), 503, "peers_unreachable"),
        (NetworkError("x"), 503, "network_error"),
        (DeadlineExceeded("x"), 504, "deadline_exceeded"),
        (KeyFileError("x"), 500, "gateway_misconfigured"),
        (ConfigError("x"), 500, "gateway_misconfigured"),
        (MeshError("x"), 500, "internal_error"),
    ],
)
def test_mesh_errors_map_to_http(error: MeshError, status: int, code: str) -> None:
    api = from_mesh_error(error)
    assert (api.status, api.code) == (status, code)
    body = api.body()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert str(error) in body["message"]


def test_every_class_of_the_mesh_error_tree_is_mapped_on_purpose() -> None:
    classes = [
        cls
        for _, cls in inspect.getmembers(mesh.errors, inspect.isclass)
        if issubclass(cls, MeshError) and cls is not MeshError
    ]
    for cls in classes:
        error = cls("x") if cls is not Busy else Busy(retry_after_ms=1)
        assert from_mesh_error(error).status != 500 or cls in (KeyFileError, ConfigError), cls


def test_busy_says_when_to_retry_in_whole_seconds() -> None:
    assert from_mesh_error(Busy(retry_after_ms=1500)).headers == {"Retry-After": "2"}
    assert from_mesh_error(Busy(retry_after_ms=0)).headers == {"Retry-After": "1"}


def test_api_errors_pass_through() -> None:
    error = ApiError(413, "too big", code="request_too_large")
    assert from_mesh_error(error) is error


def test_api_keys_check_bearer_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# operators\nkey-one\n\n  key-two  \n")
    keys = ApiKeys(load_api_keys(path))
    assert len(keys) == 2
    keys.check("Bearer key-one")
    keys.check("bearer key-two")
    for header, code in (
        (None, "missing_api_key"),
        ("key-one", "missing_api_key"),
        ("Basic a2V5LW9uZQ==", "missing_api_key"),
        ("Bearer key-three", "invalid_api_key"),
        ("Bearer key-on", "invalid_api_key"),
        ("Bearer ", "invalid_api_key"),
    ):
        with pytest.raises(ApiError) as caught:
            keys.check(header)
        assert (caught.value.status, caught.value.code) == (401, code)
        assert caught.value.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("content", ["", "# only a comment\n\n", "two words\n", "x" * 600])
def test_bad_key_files_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_api_keys(path)
    with pytest.raises(ConfigError):
        load_api_keys(tmp_path / "missing")


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:65535") == ("localhost", 65535)
    for bad in ("8080", ":8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_config_checks_its_values() -> None:
    bad: list[dict[str, Any]] = [
        {"port": -1},
        {"timeout_s": 0},
        {"max_body_bytes": 10},
        {"api_keys": frozenset()},
    ]
    for fields in bad:
        with pytest.raises(ConfigError):
            GatewayConfig(**fields)
