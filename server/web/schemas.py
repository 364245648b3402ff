"""The JSON bodies of the API, as pydantic models (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    """One class of the top-k answer."""

    index: int = Field(description="Class index in the model's output", examples=[281])
    label: str = Field(description="Human-readable class name", examples=["tabby"])
    probability: float = Field(ge=0, le=1, description="Softmax probability", examples=[0.62])


class Timing(BaseModel):
    """Milliseconds spent in each stage of this request."""

    preprocess: float = Field(description="Reading, decoding and transforming the upload")
    queue: float = Field(description="Waiting in the batcher for a batch to start")
    inference: float = Field(description="The batched forward pass, softmax and top-k")
    total: float = Field(description="From request arrival to the answer")


class PredictResponse(BaseModel):
    """The answer to ``POST /predict``."""

    predictions: list[Prediction] = Field(description="Most probable first")
    model: str = Field(examples=["resnet50"])
    weights: str = Field(examples=["ResNet50_Weights.IMAGENET1K_V2"])
    batch_size: int = Field(ge=1, description="Real images in the batch that served this one")
    timing_ms: Timing
    request_id: str


class ItemError(BaseModel):
    """Why one image of a /predict/batch request has no answer."""

    code: str = Field(examples=["invalid_image"])
    message: str


class BatchItem(BaseModel):
    """One file of a /predict/batch request: its top-k, or its error."""

    filename: str | None = Field(default=None, examples=["cat.jpg"])
    predictions: list[Prediction] | None = Field(default=None, description="Most probable first")
    batch_size: int | None = Field(
        default=None, ge=1, description="Real images in the batch that computed this one"
    )
    error: ItemError | None = None


class BatchPredictResponse(BaseModel):
    """The answer to ``POST /predict/batch``: one entry per file part, in order."""

    results: list[BatchItem]
    model: str = Field(examples=["resnet50"])
    request_id: str
    timing_ms: Timing = Field(
        description="The request's stages; queue and inference: the longest of its images"
    )


class ErrorDetail(BaseModel):
    """What went wrong, for machines (``code``) and people (``message``)."""

    code: str = Field(examples=["invalid_image"])
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail


class StatusResponse(BaseModel):
    """The answer of the liveness and readiness probes."""

    status: str = Field(examples=["ok"])


class BatchingInfo(BaseModel):
    """The batcher's settings."""

    max_batch_size: int
    max_batch_wait_ms: float
    max_queue_size: int
    workers: int


class PreprocessingInfo(BaseModel):
    """How uploads are transformed before the model sees them."""

    resize_size: int
    crop_size: int
    mean: list[float]
    std: list[float]
    interpolation: str
    background: list[int] = Field(description="RGB that transparent pixels are composited on")


class FidelityInfo(BaseModel):
    """int8 against fp32 on held-out photos, measured when the model was quantized."""

    photos: int = Field(description="Held-out whole photos compared")
    top1_agreement: float = Field(ge=0, le=1, description="Share with the same top-1 class")
    top5_overlap: float = Field(ge=0, le=1, description="Mean share of top-5 classes in common")
    max_probability_difference: float = Field(ge=0, le=1)
    top1_low: float = Field(ge=0, le=1, description="top1_agreement's 95 % Wilson interval, low")
    top1_high: float = Field(ge=0, le=1, description="top1_agreement's 95 % Wilson interval, high")


class PlanInfo(BaseModel):
    """The runtime plan resolved at startup from the settings and the hardware."""

    engine: str = Field(examples=["openvino"], description="torch or openvino")
    engine_version: str
    cpu: str = Field(description="The CPU's model name")
    cpu_flags: list[str] = Field(description="Its vector, int8 and bf16 extensions that matter")
    cores: int = Field(description="Cores the process may use: affinity mask and cgroup quota")
    workers: int
    threads_per_worker: int = Field(description="The engine's compute threads per worker")
    torch_threads: int = Field(description="torch's OpenMP threads in each inference thread")
    decode_threads: int = Field(description="Image-decoding threads, shared by every model")
    streams: str = Field(
        examples=["latency"],
        description="OpenVINO's CPU stream layout: latency, throughput, by-load",
    )
    solo_threads: int | None = Field(
        description="By load: the threads a batch alone runs on (the others: threads_per_worker)"
    )


class Limits(BaseModel):
    """What a request may send."""

    max_upload_mb: float = Field(description="Largest image file, MiB")
    max_request_mb: float = Field(description="Largest /predict/batch body, MiB")
    max_files: int = Field(description="Most images in one /predict/batch")
    max_image_pixels: int = Field(description="Most pixels an image may declare")
    request_timeout_s: float = Field(description="A request's deadline from its arrival")
    max_top_k: int = Field(description="The largest top_k")
    formats: list[str] = Field(description="Accepted image formats (Pillow's names)")


class VersionState(BaseModel):
    """One version of a model and its state, in Triton's words."""

    version: str = Field(examples=["1"])
    state: str = Field(examples=["READY"], description="READY, LOADING, UNLOADING or UNAVAILABLE")
    reason: str = Field(description="Why it is not READY; empty when it is", examples=[""])


class ModelSummary(BaseModel):
    """One served model, as ``GET /models`` lists it."""

    name: str = Field(examples=["resnet50"])
    ready: bool = Field(description="A version of it is ready")
    version: str = Field(description="The version a request naming none reaches", examples=["1"])
    model_versions: list[VersionState]
    load_error: str | None = Field(
        default=None, description="Why its last load at run time failed (the served versions stay)"
    )
    default: bool = Field(description="The model POST /predict serves")
    engine: str = Field(examples=["openvino"])
    precision: str = Field(examples=["bf16"])
    classes: int = Field(description="How many classes it scores", examples=[1000])


class ModelsResponse(BaseModel):
    """The answer to ``GET /models``."""

    models: list[ModelSummary]


class ModelInfo(BaseModel):
    """One model: what it is, how it runs and how its inputs are prepared."""

    model: str = Field(description="The served name")
    version: str = Field(description="The version described", examples=["1"])
    model_versions: list[VersionState] = Field(description="Every served version of the model")
    load_error: str | None = Field(
        default=None, description="Why its last load at run time failed (the served versions stay)"
    )
    source: str = Field(description="torchvision, torchscript, exported (.pt2), onnx, openvino")
    file: str | None = Field(description="The model file, or the weights file; None for random")
    file_sha256: str | None = Field(description="SHA-256 of that file (logged at startup too)")
    labels: str = Field(description="Where labels come from: imagenet, a file, or generated")
    output: str = Field(description="logits (softmax applied) or probabilities")
    weights: str
    random_weights: bool = Field(description="True when predictions are meaningless")
    num_classes: int
    input_size: list[int] = Field(description="Channels, height, width")
    preprocessing: PreprocessingInfo
    device: str
    precision: str
    compiled: bool = Field(description="torch.compile (inductor) in use")
    threads_per_worker: int
    batching: BatchingInfo
    limits: Limits
    versions: dict[str, str]
    engine: str = Field(description="torch or openvino")
    plan: PlanInfo
    int8_fidelity: FidelityInfo | None = Field(
        default=None, description="With precision int8: how it compares with fp32"
    )


class InfoResponse(ModelInfo):
    """The answer to ``GET /info``: the default model, and the list of every served model."""

    models: list[ModelSummary]
    grpc_port: int = Field(
        default=0, description="The Open Inference Protocol over gRPC's port; 0: gRPC is off"
    )
    tracing: str = Field(
        default="off",
        description="off, or where OpenTelemetry spans go and how they are sampled",
        examples=["otlp http/protobuf to http://collector:4318/v1/traces; sampler ..."],
    )


class ProtocolErrorResponse(BaseModel):
    """An error under /v2, in the Open Inference Protocol's shape."""

    error: str = Field(examples=["no model named 'nope'; served: resnet50"])


class ProtocolLive(BaseModel):
    """The protocol's server liveness body (KServe's clients read ``live``)."""

    live: bool = Field(examples=[True])


class ProtocolReady(BaseModel):
    """The protocol's server readiness body (KServe's clients read ``ready``)."""

    ready: bool = Field(examples=[True])


class ProtocolModelReady(BaseModel):
    """The protocol's model readiness body."""

    name: str = Field(examples=["resnet50"])
    ready: bool = Field(examples=[True])


def protocol_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the protocol's error body for ``statuses``."""
    return {status: {"model": ProtocolErrorResponse} for status in statuses}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error body for ``statuses``."""
    return {status: {"model": ErrorResponse} for status in statuses}
