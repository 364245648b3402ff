"""The asyncio client: ``await AsyncClient(url).classify("cat.jpg")``; same API as Client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from batchserve_client import _http, types
from batchserve_client._http import Image, Retry
from batchserve_client.errors import NotReadyError


class AsyncClient:
    """A batchserve server, over HTTP, from asyncio code; see :class:`Client`."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        deadline_s: float | None = None,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or Retry()
        options = _http.options(url, api_key, timeout_s, deadline_s, headers)
        self._http = httpx.AsyncClient(**options, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def classify(
        self, image: Image, *, top_k: int = 5, model: str | None = None
    ) -> types.Classification:
        """One image (a path, bytes or a PIL image): its top-k classes."""
        return types.classification(await self._send(_http.classify_call(image, top_k, model)))

    async def classify_many(
        self, images: Sequence[Image], *, top_k: int = 5, model: str | None = None
    ) -> list[types.Classification | types.ImageError]:
        """Several images in one request; an image the server cannot read gets an ImageError."""
        return types.batch_results(await self._send(_http.batch_call(images, top_k, model)))

    async def models(self) -> list[types.ModelSummary]:
        """Every served model."""
        return types.model_summaries(await self._send(_http.MODELS))

    async def info(self) -> dict[str, Any]:
        """``GET /info``: the default model, how it runs, the server's limits."""
        return await self._send(_http.INFO)

    async def wait_until_ready(self, timeout_s: float = 120.0, interval_s: float = 0.5) -> None:
        """Return once ``/ready`` answers 200; :class:`NotReadyError` after ``timeout_s``."""
        give_up_at = time.monotonic() + timeout_s
        while True:
            try:
                if (await self._http.get("/ready")).status_code == 200:
                    return
            except _http.RETRIED_ERRORS:
                pass
            if time.monotonic() >= give_up_at:
                raise NotReadyError(f"{self._http.base_url} not ready after {timeout_s:g} s")
            await asyncio.sleep(interval_s)

    async def _send(self, call: _http.Call) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.options)
            except _http.RETRIED_ERRORS:
                wait = self.retry.wait_s(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self.retry.wait_s(attempt, response)
                if wait is None:
                    return _http.checked(response)
            await asyncio.sleep(wait)
            attempt += 1
