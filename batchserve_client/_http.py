"""What the sync and async clients share: retry decisions, requests, answers to values."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from batchserve_client.errors import BatchserveError

#: Failures before any answer that are safe to try again: nothing reached the model.
RETRIED_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
#: Answers that say "try again later": overloaded or not ready (503), rate limited (429).
RETRIED_STATUSES: Final = frozenset({429, 503})


class Encodable(Protocol):
    """A PIL image, or anything with PIL's ``save(file, format=...)``."""

    def save(self, fp: Any, format: str | None = None) -> None:
        """Write the image to ``fp`` in ``format``."""
        ...


Image = str | Path | bytes | bytearray | Encodable


@dataclass(frozen=True, slots=True)
class Retry:
    """How often to try, and how long to wait between tries.

    The backoff (``backoff_s``, doubled each time) has full jitter: the wait is
    drawn from 0 to the backoff, so that clients refused together do not come
    back together. 503 and 429 wait their ``Retry-After`` first, then the
    jittered backoff on top; connection failures the jittered backoff alone.
    No wait is longer than ``max_wait_s``. Other errors are never retried.
    ``uniform`` draws from [0, 1) (tests pass a fixed one).
    """

    attempts: int = 4
    backoff_s: float = 0.25
    max_wait_s: float = 10.0
    uniform: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def wait_s(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds before try ``attempt + 1``; None when it must not be retried."""
        if attempt + 1 >= self.attempts:
            return None
        jitter = self.uniform() * self.backoff_s * 2.0**attempt
        if response is None:
            return min(jitter, self.max_wait_s)
        if response.status_code not in RETRIED_STATUSES:
            return None
        return min((retry_after_s(response) or 0.0) + jitter, self.max_wait_s)


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), if present and sane."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def options(
    url: str,
    api_key: str | None,
    timeout_s: float,
    deadline_s: float | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """httpx client options: the base URL, the timeout, and the headers of every request
    (the key, the deadline the server enforces, and any ``extra``)."""
    headers = {"Accept": "application/json", **(extra or {})}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if deadline_s is not None:
        headers["X-Request-Timeout"] = f"{deadline_s:g}"
    return {"base_url": url, "timeout": timeout_s, "headers": headers}


def image_bytes(image: Image) -> bytes:
    """The encoded image: a file's bytes, the bytes given, or a PIL image saved as PNG."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: the server sees the pixels given
    return buffer.getvalue()


def file_name(image: Image, index: int) -> str:
    """A name for a multipart part: the file's, else ``image_<index>``."""
    return Path(image).name if isinstance(image, str | Path) else f"image_{index}"


def predict_path(model: str | None, batch: bool = False) -> str:
    """/predict on the default model, /models/{name}/predict on a named one."""
    base = f"/models/{model}/predict" if model else "/predict"
    return f"{base}/batch" if batch else base


@dataclass(frozen=True, slots=True)
class Call:
    """One request to make: method, path and httpx's keyword arguments."""

    method: str
    path: str
    options: dict[str, Any]


def classify_call(image: Image, top_k: int, model: str | None) -> Call:
    """One image, sent as the raw body (no multipart encoding on either side)."""
    return Call(
        "POST",
        predict_path(model),
        {
            "params": {"top_k": top_k},
            "content": image_bytes(image),
            "headers": {"Content-Type": "application/octet-stream"},
        },
    )


def batch_call(images: Sequence[Image], top_k: int, model: str | None) -> Call:
    """Several images as the ``file`` parts of one /predict/batch request."""
    files = [("file", (file_name(image, i), image_bytes(image))) for i, image in enumerate(images)]
    return Call(
        "POST", predict_path(model, batch=True), {"params": {"top_k": top_k}, "files": files}
    )


MODELS: Final = Call("GET", "/models", {})
INFO: Final = Call("GET", "/info", {})


def checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a successful answer; :class:`BatchserveError` for any other."""
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    raise BatchserveError(response.status_code, code, message, response.headers.get("x-request-id"))
