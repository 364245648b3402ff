"""batchserve's Python client: classify images on a batchserve server, sync or asyncio.

Imports only httpx (no torch, no Pillow)::

    from batchserve_client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as client:
        client.wait_until_ready()
        print(client.classify("cat.jpg").top.label)
"""

from __future__ import annotations

from batchserve_client._http import Retry
from batchserve_client.async_client import AsyncClient
from batchserve_client.client import Client
from batchserve_client.errors import BatchserveError, NotReadyError
from batchserve_client.types import Classification, ImageError, ModelSummary, Prediction

__all__ = [
    "AsyncClient",
    "BatchserveError",
    "Classification",
    "Client",
    "ImageError",
    "ModelSummary",
    "NotReadyError",
    "Prediction",
    "Retry",
]
