"""The gRPC server's life: on its port or off, drained on SIGTERM like HTTP, health that follows."""

from __future__ import annotations

import asyncio
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import tritonclient.grpc as tg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from loadtest.process import free_port
from server.web.app import create_app
from server.web.grpc.messages import SERVICE
from tests.conftest import RunningServer, make_settings, start_server
from tests.engine import EngineKeeper
from tests.server.web.grpc.test_service import grpc_address, image_input


def _health(server: RunningServer) -> int:
    with grpc.insecure_channel(grpc_address(server)) as channel:
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=30).status)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_refuses_new_calls_and_finishes_those_in_flight() -> None:
    engines = EngineKeeper()
    settings = make_settings(grpc_port=free_port(), max_batch_size=1)
    running = start_server(create_app(settings, preparer=engines))
    gated = engines.built["resnet50"]
    gated.gate.clear()
    client = tg.InferenceServerClient(grpc_address(running))
    try:
        assert _health(running) == health_pb2.HealthCheckResponse.SERVING
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.infer, "resnet50", [image_input("cat.jpg")])
            assert gated.started.acquire(timeout=30)
            running.server.handle_exit(signal.SIGTERM, None)
            assert not client.is_server_ready()
            assert _health(running) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(InferenceServerException) as caught:
                client.infer("resnet50", [image_input("rocket.jpg")])
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
            assert "shutting down" in caught.value.message()
            gated.gate.set()
            assert in_flight.result(timeout=60).as_numpy("PROBABILITIES") is not None
    finally:
        gated.gate.set()
        client.close()
        running.thread.join(timeout=60)
        running.stop()
    assert not _listening(settings.grpc_port)


def test_port_zero_turns_grpc_off() -> None:
    running = start_server(create_app(make_settings(grpc_port=0), preparer=EngineKeeper()))
    try:
        assert running.app.state.grpc is None
        with running.client() as client:
            assert client.get("/info").json()["grpc_port"] == 0
    finally:
        running.stop()


def test_a_taken_port_stops_the_start_and_the_models_close() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = create_app(make_settings(grpc_port=taken.getsockname()[1]), preparer=EngineKeeper())

        async def start() -> None:
            async with app.router.lifespan_context(app):
                pytest.fail("the app started on a port already taken")

        with pytest.raises(RuntimeError, match=r"cannot listen for gRPC on 127\.0\.0\.1:"):
            asyncio.run(start())
    assert app.state.registry.draining
