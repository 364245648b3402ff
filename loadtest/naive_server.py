"""The baseline a user would write first: the model in a plain FastAPI endpoint.

One synchronous handler (FastAPI runs it on its thread pool), eager fp32 torch,
torchvision's own transforms, one forward pass per request, no batcher, no
engine choice. ``python -m loadtest.naive_server --port 9000`` serves it; the
engine benchmark runs it beside batchserve under the same load. It answers in
batchserve's response shape so that the same load generator drives both.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from torchvision.models import get_model, get_model_weights


def create_naive_app(model_name: str = "resnet50") -> FastAPI:
    """The endpoint as tutorials write it (random weights: speed does not depend on them)."""
    weights = get_model_weights(model_name).DEFAULT
    model = get_model(model_name, weights=None).eval()
    transform = weights.transforms()
    categories = weights.meta["categories"]
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        started = time.perf_counter()
        image = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        with torch.inference_mode():
            probabilities = model(transform(image).unsqueeze(0)).softmax(dim=1)[0]
        values, indices = probabilities.topk(5)
        total_ms = (time.perf_counter() - started) * 1000
        return {
            "predictions": [
                {"index": int(i), "label": categories[int(i)], "probability": float(p)}
                for p, i in zip(values, indices, strict=True)
            ],
            "batch_size": 1,
            "timing_ms": {"total": total_ms},
        }

    return app


def main() -> None:
    """Serve the baseline on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--model", default="resnet50")
    args = parser.parse_args()
    uvicorn.run(create_naive_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
