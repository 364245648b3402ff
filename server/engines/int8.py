"""int8 after training: NNCF quantization, calibrated on representative photos, checked.

The int8 model is compared with the fp32 one on held-out whole photos (see
:mod:`server.engines.calibration`): top-1 agreement, top-5 overlap and the
largest probability difference. Below ``BATCHSERVE_INT8_MIN_AGREEMENT`` the
server refuses to start, unless the weights are random (then the check means
nothing and is only reported).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy.typing as npt
import openvino as ov
import torch

from server.engines.calibration import CalibrationSet
from server.engines.errors import CalibrationError, Int8FidelityError

logger = logging.getLogger(__name__)


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval for a share of agreement (SciPy's, an NNCF dependency).

    Unlike the normal approximation it stays inside [0, 1] and is honest at 22 of 22.
    """
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True, slots=True)
class FidelityReport:
    """How int8 compares with fp32 on ``photos`` held-out photos.

    ``top1_low`` and ``top1_high`` bound the top-1 agreement one would measure on
    many more such photos (95 % Wilson interval): 20 of 22 agreeing says "somewhere
    between 72 % and 97 %", not "91 %".
    """

    photos: int
    top1_agreement: float
    top5_overlap: float
    max_probability_difference: float
    top1_low: float = 0.0
    top1_high: float = 1.0

    def describe(self) -> str:
        """One line for logs and errors."""
        return (
            f"top-1 agreement {self.top1_agreement:.0%} on {self.photos} held-out photos "
            f"(95% interval {self.top1_low:.0%}-{self.top1_high:.0%}), top-5 overlap "
            f"{self.top5_overlap:.0%}, largest probability difference "
            f"{self.max_probability_difference:.3f}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (cache metadata, /info)."""
        return asdict(self)


def nncf_version() -> str | None:
    """NNCF's version when installed (``batchserve[int8]``); serving a cached model needs none."""
    try:
        import nncf
    except ImportError:
        return None
    return str(nncf.__version__)


def quantize(
    model: ov.Model, calibration: CalibrationSet, fp32_ops: Sequence[str] = ()
) -> ov.Model:
    """NNCF post-training quantization of an fp32 OpenVINO model, calibrated on every sample.

    ``fp32_ops`` names operation types (``GroupConvolution``: depthwise convolutions),
    operation names, or :data:`FIRST_LAYER` / :data:`LAST_LAYER`, that stay in fp32:
    the per-model lever for a network whose answers drift too far in int8 (see
    docs/performance.md). An entry that matches nothing is an error, so a typo
    cannot silently quantize everything.
    """
    nncf = _nncf()
    samples = [t.unsqueeze(0).numpy() for t in calibration.calibration]
    return nncf.quantize(
        model,
        nncf.Dataset(samples),
        subset_size=len(samples),
        ignored_scope=_kept_in_fp32(nncf, model, fp32_ops),
    )


#: ``int8_fp32_ops`` entries for the model's first and last layer (a Convolution,
#: GroupConvolution or MatMul, in the graph's order), whatever the exporter named them:
#: the input's convolution and the classifier, which int8 hurts most on small networks.
FIRST_LAYER: Final = "first-layer"
LAST_LAYER: Final = "last-layer"
_LAYER_TYPES: Final = frozenset({"Convolution", "GroupConvolution", "MatMul"})


def layer_positions(model: ov.Model) -> dict[str, str]:
    """:data:`FIRST_LAYER` and :data:`LAST_LAYER` to those operations' names in ``model``."""
    layers = [op for op in model.get_ordered_ops() if op.get_type_name() in _LAYER_TYPES]
    if not layers:
        return {}
    return {FIRST_LAYER: layers[0].get_friendly_name(), LAST_LAYER: layers[-1].get_friendly_name()}


def _kept_in_fp32(nncf: Any, model: ov.Model, fp32_ops: Sequence[str]) -> Any:
    """NNCF's ignored scope for ``fp32_ops``: each entry a type, a name or a layer's position."""
    types = {op.get_type_name() for op in model.get_ops()}
    names = {op.get_friendly_name() for op in model.get_ops()}
    positions = layer_positions(model)
    if unknown := [entry for entry in fp32_ops if entry not in types | names | set(positions)]:
        raise CalibrationError(
            f"BATCHSERVE_INT8_FP32_OPS: {', '.join(unknown)} is no operation type or name of "
            f"this model, nor {FIRST_LAYER} or {LAST_LAYER} (its types: "
            f"{', '.join(sorted(types))})"
        )
    return nncf.IgnoredScope(
        names=[positions.get(entry, entry) for entry in fp32_ops if entry not in types],
        types=[entry for entry in fp32_ops if entry in types],
    )


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise CalibrationError(
            "quantizing to int8 needs NNCF: pip install 'batchserve[int8]' (or run "
            "`batchserve quantize` where it is installed and copy BATCHSERVE_CACHE_DIR)"
        ) from exc
    return nncf


def compare(fp32_logits: npt.ArrayLike, int8_logits: npt.ArrayLike) -> FidelityReport:
    """Agreement of two models' answers on the same photos (``photos x classes`` logits)."""
    fp32 = torch.as_tensor(fp32_logits).float().softmax(dim=1)
    int8 = torch.as_tensor(int8_logits).float().softmax(dim=1)
    k = min(5, fp32.shape[1])
    top_fp32, top_int8 = fp32.topk(k, dim=1).indices, int8.topk(k, dim=1).indices
    agreeing = int((top_fp32[:, 0] == top_int8[:, 0]).sum().item())
    photos = fp32.shape[0]
    overlaps = [
        len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top_fp32, top_int8, strict=True)
    ]
    low, high = wilson_interval(agreeing, photos)
    return FidelityReport(
        photos=photos,
        top1_agreement=round(agreeing / photos, 4),
        top5_overlap=round(sum(overlaps) / len(overlaps), 4),
        max_probability_difference=round((fp32 - int8).abs().max().item(), 4),
        top1_low=round(low, 4),
        top1_high=round(high, 4),
    )


def check(report: FidelityReport, minimum: float, random_weights: bool) -> None:
    """Refuse int8 below ``minimum`` top-1 agreement; with random weights only warn."""
    if report.top1_agreement >= minimum:
        logger.info("int8 fidelity: %s", report.describe())
        return
    if random_weights:
        logger.warning("int8 fidelity (random weights, not enforced): %s", report.describe())
        return
    raise Int8FidelityError(
        f"int8 answers differ from fp32 too often: {report.describe()}, below "
        f"BATCHSERVE_INT8_MIN_AGREEMENT={minimum:g}. Calibrate on images like the ones you "
        "serve (BATCHSERVE_CALIBRATION_DIR, at least a few dozen), lower the threshold if "
        "this is acceptable, or serve fp32 (BATCHSERVE_PRECISION=auto)"
    )
