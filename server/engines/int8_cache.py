"""The int8 model cache: quantize once, start in seconds afterwards.

An entry is keyed by everything the quantized model depends on (model, weights
file hash, preprocessing, calibration images, OpenVINO version), so a change of
any of them misses; an entry made by another NNCF version than the one
installed is stale too. (A server without NNCF, such as the CPU image, serves
any entry: it cannot quantize, and the model does not depend on NNCF at run
time.) An entry whose files do not match the hashes
in its metadata is deleted and rebuilt, never trusted. A cache that cannot be
written is a warning: the server then quantizes at every start.
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

from server.engines.int8 import FidelityReport

logger = logging.getLogger(__name__)

#: Bumped when the entry layout or the quantization recipe changes.
FORMAT: Final = 1
_FILES: Final = ("model.xml", "model.bin")


def cache_key(parts: dict[str, str]) -> str:
    """The SHA-256 of everything an entry depends on."""
    return hashlib.sha256(
        json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()
    ).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Int8Cache:
    """Quantized models under ``<cache_dir>/int8/<key>/``: model.xml, model.bin, meta.json."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "int8"

    def __repr__(self) -> str:
        return f"<Int8Cache {self.root}>"

    def entry(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.root / key[:32]

    def load(self, key: str, nncf: str | None) -> tuple[ov.Model, FidelityReport] | None:
        """The cached model and its fidelity report; None on a miss, a stale or damaged entry.

        ``nncf``: the installed NNCF version (None: not installed, any entry will do).
        """
        entry = self.entry(key)
        if not (entry / "meta.json").is_file():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            if meta["key"] != key:
                raise ValueError("the entry belongs to another key")
            if nncf is not None and meta["depends_on"]["nncf"] != nncf:
                raise ValueError(f"made by NNCF {meta['depends_on']['nncf']}, not {nncf}")
            for name in _FILES:
                if _sha256(entry / name) != meta["sha256"][name]:
                    raise ValueError(f"{name} does not match its recorded hash")
            model = ov.Core().read_model(entry / "model.xml")
            return model, FidelityReport(**meta["fidelity"])
        except Exception as exc:  # any damage at all means: rebuild
            logger.warning("int8 cache entry %s is stale or damaged (%s): rebuilding", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(
        self, key: str, model: ov.Model, report: FidelityReport, parts: dict[str, str]
    ) -> Path | None:
        """Write an entry atomically (a staging folder renamed); None when it cannot be written."""
        staging: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
            meta: dict[str, Any] = {
                "key": key,
                "depends_on": parts,
                "sha256": {name: _sha256(staging / name) for name in _FILES},
                "fidelity": report.as_dict(),
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
            entry = self.entry(key)
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(staging, entry)
            return entry
        except OSError as exc:
            logger.warning(
                "cannot write the int8 cache under %s (%s): continuing without it", self.root, exc
            )
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            return None
