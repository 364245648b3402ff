"""Reading the image out of a multipart/form-data body, within the upload limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import Final, TypeVar

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from server.errors import ApiError, ClientDisconnectedError, DisconnectStage, ErrorCode
from server.progress import Progress

T = TypeVar("T")

FIELD: Final = "file"
#: Room for boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
#: Non-file fields are small by nature; a huge one is refused while parsing.
_MAX_FIELD_BYTES: Final = 16 * 1024
_MAX_FILES: Final = 4
_MAX_FIELDS: Final = 16


def _too_large(max_bytes: int) -> ApiError:
    mib = max_bytes / (1024 * 1024)
    return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"the upload exceeds the limit of {mib:g} MiB")


def check_headers(request: Request, max_bytes: int) -> None:
    """Refuse a wrong content type, or a declared length over the limit, before any read."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected multipart/form-data with the image in field {FIELD!r}, "
            f"got {content_type or 'no content type'!r}",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise _too_large(max_bytes)


async def _limited(stream: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
    """Pass the body through, stopping once more than ``limit`` bytes arrived (chunked bodies)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise _too_large(limit - MULTIPART_OVERHEAD_BYTES)
        yield chunk


async def read_image_bytes(request: Request, max_bytes: int) -> bytes:
    """The bytes of the single ``file`` part, or the API error that explains why not."""
    check_headers(request, max_bytes)
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), max_bytes + MULTIPART_OVERHEAD_BYTES),
        max_files=_MAX_FILES,
        max_fields=_MAX_FIELDS,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _multipart_error(exc.message) from exc
    try:
        return await _single_file(form, max_bytes)
    finally:
        await form.close()


def _multipart_error(message: str) -> ApiError:
    if message.startswith("Too many files"):
        return ApiError(ErrorCode.TOO_MANY_FILES, f"send exactly one file in field {FIELD!r}")
    return ApiError(ErrorCode.INVALID_MULTIPART, f"malformed multipart body: {message}")


async def _single_file(form: FormData, max_bytes: int) -> bytes:
    parts = form.getlist(FIELD)
    if not parts:
        raise ApiError(ErrorCode.MISSING_FILE, f"no file in form field {FIELD!r}")
    if len(parts) > 1:
        raise ApiError(ErrorCode.TOO_MANY_FILES, f"send exactly one file in field {FIELD!r}")
    part = parts[0]
    if not isinstance(part, UploadFile):
        raise ApiError(ErrorCode.MISSING_FILE, f"field {FIELD!r} must be a file upload, not text")
    data = await part.read()
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not data:
        raise ApiError(ErrorCode.EMPTY_FILE, "the uploaded file is empty")
    return data


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
