"""A peer for the engine benchmark: LitServe serving the same OpenVINO model as batchserve.

LitServe (Lightning AI's batching server) is what a user who wants batching
without writing it reaches for. This server gives it everything batchserve
has except batchserve's own pipeline: the same engine, built by the same code
(OpenVINO, the same precision, the same int8 model from the same cache), the
same decoding and cropping, the same batch size and wait. What differs is the
serving: LitServe decodes the batch's images in its inference worker, one
after the other, between forward passes.

``python -m loadtest.litserve_server --port 9000 --precision int8`` serves
``POST /predict`` (multipart ``file``) in batchserve's response shape, so the
same load generator drives both; LitServe's own ``GET /health`` says when its
worker is ready. A benchmark-only dependency (``litserve`` in the dev extra).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import litserve as ls

from server.config import Settings
from server.engines import Crop, Engine, Row
from server.models import preprocess
from server.models.plan import resolve_plan
from server.service.preparation import prepare


class BatchserveModelAPI(ls.LitAPI):  # type: ignore[misc]
    """batchserve's engine behind LitServe's batching: decode, batch, forward, answer."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            max_batch_size=settings.max_batch_size,
            batch_timeout=settings.max_batch_wait_ms / 1000.0,
        )
        self.settings = settings
        self.engine: Engine | None = None

    def setup(self, device: str) -> None:
        """Build the engine as ``batchserve serve`` does (OpenVINO, the plan's threads)."""
        plan = resolve_plan(self.settings)
        engine = prepare(self.settings, plan).built.engine
        engine.warm_up(plan.max_batch_size)
        self.engine = engine

    # No annotation on ``request``: LitServe reads it at run time to choose what to pass, and
    # postponed annotations would hand it a string; left out, it passes the parsed form.
    def decode_request(self, request) -> Crop:  # type: ignore[no-untyped-def]  # noqa: ANN001
        """The uploaded file's bytes, decoded, resized and cropped to the engine's uint8 input."""
        assert self.engine is not None
        data = request["file"].file.read()
        spec, limit = self.engine.model.preprocessing, self.settings.max_image_pixels
        return preprocess.image_to_crop(data, spec, limit)

    def predict(self, crops: list[Crop]) -> list[Row]:
        """One forward pass for the batch LitServe collected."""
        assert self.engine is not None
        return self.engine.run(crops)

    def encode_response(self, row: Row) -> dict[str, Any]:
        """batchserve's answer shape: the top 5, the batch size and the pass's time."""
        assert self.engine is not None
        labels = self.engine.model.categories
        return {
            "predictions": [
                {"index": index, "label": labels[index], "probability": probability}
                for index, probability in row.top[:5]
            ],
            "batch_size": row.batch_size,
            "timing_ms": {"inference": row.inference_s * 1000},
        }


def main() -> None:
    """Serve the peer on 127.0.0.1 with one inference worker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    # The environment's BATCHSERVE_* settings apply (the cache folder, say), as for batchserve.
    settings = Settings(
        model=args.model, weights="random", engine="openvino", precision=args.precision
    )
    started = time.perf_counter()
    server = ls.LitServer(BatchserveModelAPI(settings), accelerator="cpu", workers_per_device=1)
    print(f"LitServe peer built in {time.perf_counter() - started:.1f}s", flush=True)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
