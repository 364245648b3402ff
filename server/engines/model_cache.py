"""The OpenVINO model cache: convert and quantize once, start in seconds afterwards.

Two kinds of entry live under ``BATCHSERVE_CACHE_DIR``: ``openvino/<key>/``,
a torch model converted to OpenVINO's representation (fp32 weights, dynamic
batch; bf16 and fp32 are compiled from it), and ``int8/<key>/``, the model
quantized by NNCF with its fidelity report. An entry is keyed by everything it
depends on (model, weights file hash, preprocessing, calibration images,
OpenVINO and torch versions), so a change of any of them misses; an entry made
by another NNCF version than the one installed is stale too. (A server without
NNCF, such as the CPU image, serves any int8 entry: it cannot quantize, and the
model does not depend on NNCF at run time.) An entry whose files do not match
the hashes in its metadata is deleted and rebuilt, never trusted. A cache that
cannot be written is a warning: the server then converts (and quantizes) at
every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import openvino as ov

logger = logging.getLogger(__name__)

#: Bumped when the entry layout, the conversion or the quantization recipe changes.
FORMAT: Final = 1
_FILES: Final = ("model.xml", "model.bin")


def cache_key(parts: dict[str, str]) -> str:
    """The SHA-256 of everything an entry depends on."""
    return hashlib.sha256(
        json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()
    ).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ModelCache:
    """OpenVINO models under ``<cache_dir>/<kind>/<key>/``: model.xml, model.bin, meta.json."""

    def __init__(self, cache_dir: Path, kind: str) -> None:
        self.kind = kind
        self.root = cache_dir / kind

    def __repr__(self) -> str:
        return f"<ModelCache {self.root}>"

    def entry(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.root / key[:32]

    def load(
        self, key: str, made_by: dict[str, str] | None = None
    ) -> tuple[ov.Model, dict[str, Any]] | None:
        """The cached model and its metadata; None on a miss, a stale or damaged entry.

        ``made_by``: what the entry must have been made with (the installed NNCF,
        say); anything else recorded in it may differ.
        """
        entry = self.entry(key)
        if not (entry / "meta.json").is_file():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            _check(meta, key, made_by or {})
            for name in _FILES:
                if _sha256(entry / name) != meta["sha256"][name]:
                    raise ValueError(f"{name} does not match its recorded hash")
            return ov.Core().read_model(entry / "model.xml"), meta
        except Exception as exc:  # any damage at all means: rebuild
            logger.warning(
                "%s cache entry %s is stale or damaged (%s): rebuilding", self.kind, entry, exc
            )
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, key: str, model: ov.Model, parts: dict[str, str], **extra: Any) -> Path | None:
        """Write an entry atomically (a staging folder renamed); None when it cannot be written.

        ``parts`` (what the key was made of) and ``extra`` are kept in its metadata.
        """
        staging: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
            meta: dict[str, Any] = {
                "key": key,
                "depends_on": parts,
                "sha256": {name: _sha256(staging / name) for name in _FILES},
                **extra,
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
            entry = self.entry(key)
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(staging, entry)
            return entry
        except OSError as exc:
            logger.warning(
                "cannot write the %s cache under %s (%s): continuing without it",
                self.kind, self.root, exc,
            )  # fmt: skip
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            return None


def _check(meta: dict[str, Any], key: str, made_by: dict[str, str]) -> None:
    if meta["key"] != key:
        raise ValueError("the entry belongs to another key")
    for name, wanted in made_by.items():
        if (recorded := meta["depends_on"].get(name)) != wanted:
            raise ValueError(f"made by {name} {recorded}, not {wanted}")
