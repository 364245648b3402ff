"""Locust users for batchserve: real photos, and a small share of bad uploads.

``make loadtest URL=http://host:8000 USERS=8 DURATION=60s`` runs it headless and
writes CSV and HTML reports to ``results/``. Environment variables:

- ``LOCUST_PHOTOS``: a folder of photos to post (default: the repo's test
  photos; JPEG, PNG, WebP, GIF, BMP, TIFF of mixed sizes).
- ``LOCUST_STEP_USERS`` / ``LOCUST_STEP_SECONDS`` / ``LOCUST_STEP_MAX_USERS``:
  when ``LOCUST_STEP_USERS`` is set, a step-load shape adds that many users
  every ``LOCUST_STEP_SECONDS`` (default 30) up to ``LOCUST_STEP_MAX_USERS``
  (default 10 steps), to find where latency turns.

Tags: ``--tags good`` posts only photos, ``--tags bad`` only bad uploads. A bad
upload counts as a success only when it gets its documented 4xx and error code.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Final

from locust import FastHttpUser, LoadTestShape, between, tag, task
from PIL import Image

from loadtest.samples import pixel_bomb, truncated

ROOT = Path(__file__).resolve().parents[1]
PHOTO_SUFFIXES: Final = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def load_photos(folder: Path) -> list[tuple[str, bytes]]:
    """Every photo in ``folder`` as (name, bytes); fails loudly when there is none."""
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos in {folder}; set LOCUST_PHOTOS to a folder of images")
    return [(p.name, p.read_bytes()) for p in photos]


def _truncated_jpeg(photos: list[tuple[str, bytes]]) -> bytes:
    """The first half of a JPEG: of a photo from the folder, else of a generated one."""
    jpegs = [data for name, data in photos if name.lower().endswith((".jpg", ".jpeg"))]
    if not jpegs:
        buffer = io.BytesIO()
        Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="JPEG")
        jpegs = [buffer.getvalue()]
    return truncated(jpegs[0])


PHOTOS: Final = load_photos(Path(os.environ.get("LOCUST_PHOTOS", ROOT / "tests" / "data")))
#: (name, bytes, expected status, expected error code)
BAD_UPLOADS: Final = [
    ("notes.txt", b"this is not an image", 400, "invalid_image"),
    ("truncated.jpg", _truncated_jpeg(PHOTOS), 400, "invalid_image"),
    ("empty.jpg", b"", 400, "empty_file"),
    ("bomb.png", pixel_bomb(), 422, "image_too_large"),
]


class ClassifyUser(FastHttpUser):
    """Posts a random photo; now and then a bad upload that must be refused correctly."""

    wait_time = between(0.0, 0.2)

    @tag("good")
    @task(20)
    def classify_photo(self) -> None:
        """A real photo: 200 with five predictions."""
        name, data = random.choice(PHOTOS)
        with self.client.post(
            "/predict", files={"file": (name, data)}, name="/predict", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{name}: {response.status_code} {response.text[:200]}")
            elif len(response.json().get("predictions", [])) != 5:
                response.failure(f"{name}: not five predictions")
            else:
                response.success()

    @tag("bad")
    @task(1)
    def bad_upload(self) -> None:
        """A bad upload: a success only with its documented status and code."""
        name, data, status, code = random.choice(BAD_UPLOADS)
        with self.client.post(
            "/predict", files={"file": (name, data)}, name=f"/predict [{code}]", catch_response=True
        ) as response:
            got = response.json().get("error", {}).get("code") if response.text else None
            if response.status_code == status and got == code:
                response.success()
            else:
                response.failure(
                    f"{name}: expected {status} {code}, got {response.status_code} {got}"
                )


if os.environ.get("LOCUST_STEP_USERS"):

    class StepLoad(LoadTestShape):
        """Add ``LOCUST_STEP_USERS`` users every ``LOCUST_STEP_SECONDS`` up to the maximum."""

        step_users = int(os.environ["LOCUST_STEP_USERS"])
        step_seconds = float(os.environ.get("LOCUST_STEP_SECONDS", "30"))
        max_users = int(os.environ.get("LOCUST_STEP_MAX_USERS", str(10 * step_users)))

        def tick(self) -> tuple[int, float] | None:
            """Users and spawn rate for now; ``None`` stops the run after the last step."""
            run_time: float = self.get_run_time()  # type: ignore[no-untyped-call]
            step = int(run_time // self.step_seconds) + 1
            users = step * self.step_users
            if users > self.max_users:
                return None
            return users, float(self.step_users)
