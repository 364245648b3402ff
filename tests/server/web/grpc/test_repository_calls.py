"""The model repository over gRPC with tritonclient: index, load, unload, behind the admin keys.

The model is the tiny 12-class ResNet-18 (TorchScript) of the REST repository
tests, in numbered version folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from loadtest.process import free_port
from server.web.app import create_app
from tests.conftest import RunningServer, make_settings, start_server
from tests.server.web.grpc.test_service import grpc_address, raw_call
from tests.server.web.test_repository import ADMIN, _version

#: Real model files: make test-fast skips these.
pytestmark = pytest.mark.slow

BEARER = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def control(tiny_files: dict[str, Path], tmp_path: Path) -> Iterator[RunningServer]:
    _version(tmp_path, tiny_files["ts"], 1)
    settings = make_settings(
        model_repository=tmp_path, model_control="explicit", admin_keys=ADMIN,
        grpc_port=free_port(),
    )  # fmt: skip
    running = start_server(create_app(settings))
    yield running
    running.stop()


def _status(call: object) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()  # type: ignore[operator]
    return str(caught.value.status())


def test_index_load_and_unload_need_the_admin_key(
    control: RunningServer, tiny_files: dict[str, Path]
) -> None:
    client = tg.InferenceServerClient(grpc_address(control))
    index = client.get_model_repository_index(headers=BEARER, as_json=True)["models"]
    assert index == [{"name": "tiny", "version": "1", "state": "READY"}]
    assert _status(lambda: client.get_model_repository_index()) == "StatusCode.UNAUTHENTICATED"
    assert _status(lambda: client.unload_model("tiny")) == "StatusCode.UNAUTHENTICATED"
    root = control.registry.settings.model_repository
    assert root is not None
    _version(root, tiny_files["ts"], 2)
    client.load_model("tiny", headers=BEARER)
    assert client.is_model_ready("tiny", "2")
    client.unload_model("tiny", headers=BEARER)
    assert _status(lambda: client.is_model_ready("tiny")) == "StatusCode.NOT_FOUND"
    assert _status(lambda: client.unload_model("tiny", headers=BEARER)) == "StatusCode.NOT_FOUND"
    assert _status(lambda: client.load_model("absent", headers=BEARER)) == (
        "StatusCode.INVALID_ARGUMENT"
    )
    # KServe's layout names the model in field 1 (Triton's repository_name).
    answer = raw_call(
        control, "RepositoryModelLoad", (("x-api-key", ADMIN),), repository_name="tiny"
    )
    assert (answer.model_name, answer.isLoaded) == ("tiny", True)
    assert client.is_model_ready("tiny")


def test_loading_needs_explicit_model_control(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    _version(tmp_path, tiny_files["ts"], 1)
    settings = make_settings(model_repository=tmp_path, admin_keys=ADMIN, grpc_port=free_port())
    running = start_server(create_app(settings))
    try:
        client = tg.InferenceServerClient(grpc_address(running))
        load = lambda: client.load_model("tiny", headers=BEARER)  # noqa: E731
        assert _status(load) == "StatusCode.PERMISSION_DENIED"
    finally:
        running.stop()
