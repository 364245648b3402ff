"""Readiness turns at the signal, before uvicorn's drain and the lifespan shutdown."""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from server.web.app import create_app
from server.web.errors import ErrorCode
from server.web.serving import DrainingServer
from tests.conftest import make_settings, photo, start_server
from tests.engine import EngineKeeper
from tests.server.web.test_routes import assert_error


async def _ready_status(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
        return await client.get("/ready")


def test_the_signal_turns_readiness_off_at_once_and_in_flight_work_still_finishes() -> None:
    engines = EngineKeeper()
    running = start_server(create_app(make_settings(max_batch_size=1), preparer=engines))
    assert isinstance(running.server, DrainingServer)
    gated = engines.built["resnet50"]
    gated.gate.clear()
    try:
        with running.client() as client, ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                client.post, "/predict", files={"file": ("c.jpg", photo("cat.jpg"))}
            )
            assert gated.started.acquire(timeout=30)
            running.server.handle_exit(signal.SIGTERM, None)
            # uvicorn has not run the lifespan shutdown yet: the request is still blocked.
            body = assert_error(asyncio.run(_ready_status(running.app)), ErrorCode.NOT_READY)
            assert "shutting down" in body["error"]["message"]
            assert running.thread.is_alive()
            gated.gate.set()
            assert in_flight.result(timeout=60).status_code == 200
    finally:
        gated.gate.set()
        running.stop()
    assert running.service.draining
