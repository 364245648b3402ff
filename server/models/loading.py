"""One model's settings in, a :class:`~server.models.torchvision_models.LoadedModel` out,
whatever its source.

``BATCHSERVE_MODEL`` is a torchvision name (weights from ``BATCHSERVE_WEIGHTS``)
or a model file. Then the settings that describe the model apply alike to
every source: its served name, labels, preprocessing and output kind. A probe
forward pass at the crop size proves the model accepts its input and tells
its output width, which the labels must match.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Final

import torch
from torchvision.models import ResNet50_Weights

from server.config import Settings, is_model_path
from server.models import model_files
from server.models.errors import ModelLoadError
from server.models.labels import check_count, read_labels
from server.models.preprocess import PreprocessSpec
from server.models.sources import served_name
from server.models.torchvision_models import (
    LoadedModel,
    ensure_weights,
    generated_labels,
    load_torchvision_model,
    resolve_weights,
    sha256_of,
)

logger = logging.getLogger(__name__)

#: Preprocessing of model files unless set: torchvision's ImageNet classifiers' convention.
IMAGENET_SPEC: Final = PreprocessSpec(
    resize_size=256,
    crop_size=224,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bilinear",
)


def imagenet_categories() -> tuple[str, ...]:
    """ImageNet-1k's 1000 class names, as torchvision ships them."""
    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def load_model(settings: Settings) -> LoadedModel:
    """Load the model ``settings`` describe; :class:`ModelLoadError` says what is wrong."""
    if is_model_path(settings.model):
        model = _from_file(Path(settings.model), settings)
    else:
        model = load_torchvision_model(resolve_weights(settings.model, settings.weights))
        model = dataclasses.replace(
            model, preprocessing=configured_preprocessing(settings, model.preprocessing)
        )
    classes = output_width(model)
    if classes != model.num_classes:  # a module whose head differs from what was assumed
        model = dataclasses.replace(model, categories=generated_labels(classes))
    model = _with_labels(model, settings)
    name = served_name(settings)
    if model.sha256:
        logger.info("model %s: %s sha256 %s", name, model.path, model.sha256)
    return dataclasses.replace(model, name=name, output=settings.output)


def download_weights(settings: Settings) -> None:
    """Download a torchvision model's registry weights once (model files are local)."""
    if not is_model_path(settings.model):
        ensure_weights(resolve_weights(settings.model, settings.weights))


def configured_preprocessing(settings: Settings, default: PreprocessSpec) -> PreprocessSpec:
    """``default`` with every preprocessing setting that is set applied."""
    spec = PreprocessSpec(
        resize_size=settings.resize_size or default.resize_size,
        crop_size=settings.crop_size or default.crop_size,
        mean=settings.mean or default.mean,
        std=settings.std or default.std,
        interpolation=settings.interpolation or default.interpolation,
    )
    if spec.resize_size < spec.crop_size:
        raise ModelLoadError(
            f"BATCHSERVE_RESIZE_SIZE={spec.resize_size} is smaller than "
            f"BATCHSERVE_CROP_SIZE={spec.crop_size}: the crop must fit in the resized image"
        )
    return spec


def _from_file(path: Path, settings: Settings) -> LoadedModel:
    file = model_files.read_model_file(path)
    spec = configured_preprocessing(settings, IMAGENET_SPEC)
    if file.fixed_size is not None and file.fixed_size != (spec.crop_size, spec.crop_size):
        height, width = file.fixed_size
        raise ModelLoadError(
            f"{path} takes {height}x{width} images but the crop size is {spec.crop_size}: "
            f"set BATCHSERVE_CROP_SIZE={height} (and a BATCHSERVE_RESIZE_SIZE to match)"
        )
    if file.fixed_batch is not None and file.fixed_batch < settings.max_batch_size:
        raise ModelLoadError(
            f"{path} was exported for batches of exactly {file.fixed_batch}: export it with a "
            "dynamic batch dimension (torch.export: dynamic_shapes={'x': {0: Dim('batch')}}; "
            "ONNX: dynamic_axes or dynamo=True with dynamic_shapes), or set "
            f"BATCHSERVE_MAX_BATCH_SIZE={file.fixed_batch}"
        )
    return LoadedModel(
        file.module,
        path.stem,
        (),
        spec,
        source=file.source,
        weights_label=str(path),
        path=path,
        # An IR's weights are in its .bin: a changed .bin is another model (and cache key).
        sha256=sha256_of(path, *model_files.companions(path)),
        labels_source="generated",
        exported=file.exported,
    )


def output_width(model: LoadedModel) -> int:
    """Run one image of the crop size through the model: its number of classes.

    Also where a model that cannot take that input fails, at startup, with the
    crop size named.
    """
    crop = model.preprocessing.crop_size
    try:
        if model.module is None:
            assert model.path is not None
            return _openvino_width(model.path, crop)
        with torch.inference_mode():
            output = model.module(torch.zeros(1, 3, crop, crop))
    except ModelLoadError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]  # one line, however long torch's message
        raise ModelLoadError(
            f"{model.weights_label}: a 1x3x{crop}x{crop} input failed ({type(exc).__name__}: "
            f"{reason}); set BATCHSERVE_CROP_SIZE to the input size it was made for"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise ModelLoadError(
            f"{model.weights_label}: the output must be one tensor of batch x classes"
        )
    return int(output.shape[1])


def _openvino_width(path: Path, crop: int) -> int:
    """The classes of an ONNX or IR file, which only OpenVINO runs (a module is None)."""
    read = model_files.read_with_openvino(path)
    read.reshape({read.inputs[0]: [1, 3, crop, crop]})
    shape = read.outputs[0].partial_shape
    if not (shape.rank.is_static and len(shape) == 2 and shape[1].is_static):
        raise ModelLoadError(f"{path}: the output must be batch x classes, it is {shape}")
    return int(shape[1].get_length())


def _with_labels(model: LoadedModel, settings: Settings) -> LoadedModel:
    """Labels from BATCHSERVE_LABELS, else ImageNet's for 1000 outputs, else ``class_<i>``."""
    if settings.labels is not None:
        labels = read_labels(settings.labels)
        check_count(labels, model.num_classes, settings.labels)
        return dataclasses.replace(model, categories=labels, labels_source=str(settings.labels))
    imagenet = imagenet_categories()
    if model.labels_source != "imagenet" and model.num_classes == len(imagenet):
        return dataclasses.replace(model, categories=imagenet, labels_source="imagenet")
    return model
