"""The Open Inference Protocol's model repository extension, as Triton implements it.

``POST /v2/repository/index`` lists every model with its versions' states;
``POST /v2/repository/models/{name}/load`` loads or reloads a model (answered
once it serves, or with why it failed), ``.../unload`` unloads one (answered once
its queue has drained). tritonclient's ``get_model_repository_index``,
``load_model`` and ``unload_model`` call them.

Who may call them: with ``BATCHSERVE_ADMIN_KEYS`` set, a caller presenting one
of those keys; without, nobody (403), except under
``BATCHSERVE_MODEL_CONTROL=explicit`` on a server that listens on loopback only.
Loading and unloading also need ``explicit``: under ``none`` the models are
fixed, under ``poll`` the repository's folders decide (as in Triton).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response

from server.service.door import ModelLoadFailedError, ModelNotServedError
from server.web.errors import ApiError, ErrorCode
from server.web.plumbing import registry_of
from server.web.schemas import protocol_error_responses
from server.web.upload import read_raw_body

if TYPE_CHECKING:
    from server.service.control import ModelControl

#: The largest load, unload or index request body read (they carry a few parameters).
MAX_BODY_BYTES: Final = 64 * 1024
ModelName = Annotated[str, Path(description="A model of the repository")]


def control_of(request: Request) -> ModelControl:
    """The app's model control."""
    control: ModelControl = request.app.state.control
    return control


#: Included behind the admin keys, or the local-only rule without them (app.py).
router = APIRouter(prefix="/v2/repository", tags=["Open Inference Protocol: model repository"])


async def _parameters(request: Request) -> dict[str, Any]:
    """The body's ``parameters`` (an empty body is none); 400 for anything but a JSON object."""
    body = await read_raw_body(request, MAX_BODY_BYTES)
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ApiError(ErrorCode.BAD_REQUEST, "parameters must be a JSON object")
    return {**parameters, **({"ready": document["ready"]} if "ready" in document else {})}


@router.post("/index", summary="Every model and its versions' states",
             responses=protocol_error_responses(400, 401, 403))  # fmt: skip
async def repository_index(request: Request) -> list[dict[str, str]]:
    """Each model version with its state and reason (``{"ready": true}``: ready ones only)."""
    ready_only = (await _parameters(request)).get("ready") is True
    return index_entries(control_of(request), ready_only)


def require_explicit(mode: str, action: str) -> None:
    """403 unless models are under explicit control (``mode``, BATCHSERVE_MODEL_CONTROL)."""
    if mode != "explicit":
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"cannot {action} models with BATCHSERVE_MODEL_CONTROL={mode}: "
            + ("the models are fixed" if mode == "none" else "the repository's folders decide"),
        )


def check_load_parameters(names: Iterable[str]) -> None:
    """400 for a load that carries a config or files: it takes the folder as it is."""
    if any(name == "config" or name.startswith("file:") for name in names):
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            "a load takes the model's folder as it is in the repository; a config or files in "
            "the request are not supported",
        )


def index_entries(control: ModelControl, ready_only: bool) -> list[dict[str, str]]:
    """Each model version with its state, and its reason when it has one."""
    return [
        {k: str(v) for k, v in dataclasses.asdict(entry).items() if v or k in ("name", "state")}
        for entry in control.index()
        if not ready_only or entry.state == "READY"
    ]


async def load_model(control: ModelControl, name: str) -> None:
    """Load or reload ``name``; 400 ``model_load_failed`` saying why it failed."""
    try:
        await control.load(name)
    except ModelLoadFailedError as exc:
        raise ApiError(ErrorCode.MODEL_LOAD_FAILED, f"failed to load {name}: {exc}") from None


async def unload_model(control: ModelControl, name: str) -> None:
    """Unload ``name`` once its queue has drained; 404 ``model_not_found`` if not served."""
    try:
        await control.unload(name)
    except ModelNotServedError as exc:
        raise ApiError(ErrorCode.MODEL_NOT_FOUND, str(exc)) from None


@router.post("/models/{name}/load", summary="Load or reload a model; answered once it serves",
             responses=protocol_error_responses(400, 401, 403))  # fmt: skip
async def repository_load(request: Request, name: ModelName) -> Response:
    """Build the model's versions beside the served ones; switch once all are ready."""
    require_explicit(registry_of(request).settings.model_control, "load")
    check_load_parameters(await _parameters(request))
    await load_model(control_of(request), name)
    return Response(status_code=200)


@router.post("/models/{name}/unload", summary="Unload a model; answered once it has drained",
             responses=protocol_error_responses(401, 403, 404))  # fmt: skip
async def repository_unload(request: Request, name: ModelName) -> Response:
    """New requests for it are 404 at once; the queued ones are answered first."""
    require_explicit(registry_of(request).settings.model_control, "unload")
    await _parameters(request)
    await unload_model(control_of(request), name)
    return Response(status_code=200)
