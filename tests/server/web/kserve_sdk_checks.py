"""The Open Inference Protocol with KServe's own Python SDK as a second real client.

Run by test_oip_kserve.py in a pytest process of its own (see there why).

tritonclient reads only statuses on the health calls; KServe's REST client reads
the bodies (``{"live": true}``, ``{"ready": true}``), and KServe's own data
models must accept the metadata. Its JSON mode sends BYTES as the strings it is
given: base64, as the protocol's JSON form of an image needs.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import (
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
)

from tests.conftest import RunningServer, photo
from tests.server.web.test_oip import _assert_like_predict


@pytest.fixture
async def kserve_client() -> AsyncIterator[InferenceRESTClient]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    yield client
    await client.close()


async def test_health_answers_what_kserves_client_reads(
    kserve_client: InferenceRESTClient, resnet_server: RunningServer
) -> None:
    assert await kserve_client.is_server_live(resnet_server.url) is True
    assert await kserve_client.is_server_ready(resnet_server.url) is True
    assert await kserve_client.is_model_ready(resnet_server.url, "resnet50") is True
    assert await kserve_client.is_model_ready(resnet_server.url, "nope") is False


def test_every_protocol_body_fits_kserves_own_data_models(resnet_server: RunningServer) -> None:
    def get(path: str) -> dict:
        response = httpx.get(resnet_server.url + path, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    assert ServerLiveResponse.model_validate(get("/v2/health/live")).live is True
    assert ServerReadyResponse.model_validate(get("/v2/health/ready")).ready is True
    ready = ModelReadyResponse.model_validate(get("/v2/models/resnet50/ready"))
    assert (ready.name, ready.ready) == ("resnet50", True)
    assert ServerMetadataResponse.model_validate(get("/v2")).name == "batchserve"
    metadata = ModelMetadataResponse.model_validate(get("/v2/models/resnet50"))
    assert [i.name for i in metadata.inputs] == ["IMAGE", "PIXELS"]
    assert metadata.outputs[0].shape == [-1, 1000]


def _images_input(names: list[str], binary: bool) -> InferInput:
    images = [photo(name) for name in names]
    if binary:
        tensor = InferInput("IMAGE", [len(images)], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
        return tensor
    # JSON: the protocol's BYTES elements are strings, so an image travels as base64.
    encoded = [base64.b64encode(image).decode("ascii") for image in images]
    return InferInput("IMAGE", [len(images)], "BYTES", data=encoded)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_kserves_client_infers_and_gets_predicts_answers(
    kserve_client: InferenceRESTClient, resnet_server: RunningServer, api, binary: bool
) -> None:
    names = ["cat.jpg", "coffee.webp"]
    request = InferRequest(
        model_name="resnet50",
        infer_inputs=[_images_input(names, binary)],
        request_outputs=[RequestedOutput("PROBABILITIES", parameters={"binary_data": binary})],
    )
    response = await kserve_client.infer(resnet_server.url, request, model_name="resnet50")
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("PROBABILITIES", "FP32", [2, 1000])
    probabilities = np.asarray(output.as_numpy()).reshape(2, 1000)
    for row, name in zip(probabilities, names, strict=True):
        expected = api.post("/predict", files={"file": (name, photo(name))}).json()
        _assert_like_predict(row, expected["predictions"])
