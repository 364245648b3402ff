"""Reading images out of a request, within the upload limits.

A multipart/form-data body with the image in field ``file`` (one, or several
for /predict/batch), or a body that is the image itself (``Content-Type:
image/*`` or ``application/octet-stream``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

from starlette.requests import Request

from server.service.progress import Progress
from server.web.errors import ApiError, ClientDisconnectedError, DisconnectStage, ErrorCode
from server.web.multipart import FormLimits, FormPart, MultipartError, read_form

T = TypeVar("T")

FIELD: Final = "file"
#: Room for boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
#: Non-file fields are small by nature; a huge one is refused while parsing.
_MAX_FIELD_BYTES: Final = 16 * 1024
_MAX_FILES: Final = 4
_MAX_FIELDS: Final = 16


#: Content types of a body that is the image itself (``curl --data-binary``, TorchServe style).
RAW_TYPES: Final = ("image/", "application/octet-stream")


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a multi-image upload: its bytes, or why it cannot be used."""

    filename: str | None
    data: bytes = b""
    error: ApiError | None = None


def _too_large(max_bytes: int, what: str = "the upload") -> ApiError:
    mib = max_bytes / (1024 * 1024)
    # 4 significant digits: BATCHSERVE_MAX_REQUEST_MB=0.1 is 104857 bytes, said "0.1 MiB".
    return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} exceeds the limit of {mib:.4g} MiB")


def is_raw(request: Request) -> bool:
    """The body is the image itself rather than a multipart form."""
    return request.headers.get("content-type", "").lower().startswith(RAW_TYPES)


def declared_length(request: Request) -> int | None:
    """The body's Content-Length when it is a plain byte count (ASCII digits), else None.

    ``str.isdigit()`` alone would accept "²" or "١٢", which ``int()`` then refuses.
    """
    value = request.headers.get("content-length", "")
    if value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def check_headers(
    request: Request,
    max_bytes: int,
    *,
    raw_allowed: bool = True,
    overhead: int = MULTIPART_OVERHEAD_BYTES,
) -> None:
    """Refuse a wrong content type, or a declared length over the limit, before any read.

    A multipart body may carry ``overhead`` bytes of framing on top of ``max_bytes``.
    """
    content_type = request.headers.get("content-type", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    if not multipart and not (raw_allowed and is_raw(request)):
        raw = ", or the image itself as image/* or application/octet-stream" if raw_allowed else ""
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected multipart/form-data with the image in field {FIELD!r}{raw}, "
            f"got {content_type or 'no content type'!r}",
        )
    declared = declared_length(request)
    if declared is not None and declared > max_bytes + (overhead if multipart else 0):
        raise _too_large(max_bytes)


async def _limited(
    stream: AsyncGenerator[bytes, None], limit: int, overhead: int = MULTIPART_OVERHEAD_BYTES
) -> AsyncGenerator[bytes, None]:
    """Pass the body through, stopping once more than ``limit`` bytes arrived (chunked bodies)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _too_large(limit - overhead)
        yield chunk


async def read_image_bytes(request: Request, max_bytes: int) -> bytes:
    """The image: the single ``file`` part, or the whole body when it is raw image bytes."""
    check_headers(request, max_bytes)
    if is_raw(request):
        return await _raw_body(request, max_bytes)
    form = await _parse(request, max_bytes + MULTIPART_OVERHEAD_BYTES, _MAX_FILES)
    return _single_file(form, max_bytes)


async def read_raw_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, up to ``max_bytes`` (413 above, declared or as it arrives)."""
    declared = declared_length(request)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes, "the request")
    chunks = [chunk async for chunk in _limited(request.stream(), max_bytes, overhead=0)]
    return b"".join(chunks)


async def _raw_body(request: Request, max_bytes: int) -> bytes:
    data = await read_raw_body(request, max_bytes)
    if not data:
        raise ApiError(ErrorCode.EMPTY_FILE, "the request body is empty")
    return data


async def read_image_parts(
    request: Request, max_file_bytes: int, max_request_bytes: int, max_files: int
) -> list[Part]:
    """Every ``file`` part of a multipart body, in order: 1 to ``max_files`` of them.

    The whole body, multipart framing included, is bounded by
    ``max_request_bytes`` (413 for the request); a part over
    ``max_file_bytes``, or empty, is an error of that part only.
    """
    check_headers(request, max_request_bytes, raw_allowed=False, overhead=0)
    form = await _parse(request, max_request_bytes, max_files, overhead=0)
    uploads = _field_parts(form)
    if len(uploads) > max_files:
        raise ApiError(
            ErrorCode.TOO_MANY_FILES, f"send at most {max_files} files in field {FIELD!r}"
        )
    if not all(upload.is_file for upload in uploads):
        raise _not_a_file()  # a malformed request, not one bad image
    return [_part(upload, max_file_bytes) for upload in uploads]


def _not_a_file() -> ApiError:
    return ApiError(ErrorCode.MISSING_FILE, f"field {FIELD!r} must be a file upload, not text")


def _part(upload: FormPart, max_bytes: int) -> Part:
    if not upload.is_file:
        raise _not_a_file()
    data = bytes(upload.data)
    if len(data) > max_bytes:
        return Part(upload.filename, error=_too_large(max_bytes, "the file"))
    if not data:
        return Part(upload.filename, error=ApiError(ErrorCode.EMPTY_FILE, "the file is empty"))
    return Part(upload.filename, data)


async def _parse(
    request: Request, limit: int, max_files: int, overhead: int = MULTIPART_OVERHEAD_BYTES
) -> list[FormPart]:
    limits = FormLimits(
        max_files=max_files, max_fields=_MAX_FIELDS, max_field_bytes=_MAX_FIELD_BYTES
    )
    body = _limited(request.stream(), limit, overhead)
    try:
        return await read_form(request.headers.get("content-type", ""), body, limits)
    except MultipartError as exc:
        raise _multipart_error(str(exc), max_files) from exc


def _multipart_error(message: str, max_files: int) -> ApiError:
    if message.startswith("Too many files"):
        many = "exactly one file" if max_files == _MAX_FILES else f"at most {max_files} files"
        return ApiError(ErrorCode.TOO_MANY_FILES, f"send {many} in field {FIELD!r}")
    return ApiError(ErrorCode.INVALID_MULTIPART, f"malformed multipart body: {message}")


def _field_parts(form: list[FormPart]) -> list[FormPart]:
    """The parts of field ``file``, in order; 400 ``missing_file`` if there are none."""
    parts = [part for part in form if part.name == FIELD]
    if not parts:
        raise ApiError(ErrorCode.MISSING_FILE, f"no file in form field {FIELD!r}")
    return parts


def _single_file(form: list[FormPart], max_bytes: int) -> bytes:
    parts = _field_parts(form)
    if len(parts) > 1:
        raise ApiError(ErrorCode.TOO_MANY_FILES, f"send exactly one file in field {FIELD!r}")
    part = _part(parts[0], max_bytes)
    if part.error is not None:
        raise part.error
    return part.data


async def cancel_on_disconnect(request: Request, work: Awaitable[T], progress: Progress) -> T:
    """Await ``work``, cancelling it if the client disconnects first (its item then costs nothing).

    Only valid once the body has been read: then the next ASGI message can only
    be ``http.disconnect``. The error names the stage ``progress`` was in.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientDisconnectedError(DisconnectStage(progress.stage))
    finally:
        watcher.cancel()
        task.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
