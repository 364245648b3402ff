"""The Open Inference Protocol with KServe's own Python SDK, in a pytest process of its own.

The SDK registers its ``inference.*`` messages in protobuf's default pool, as
tritonclient's gRPC client does under the same names: one process cannot
import both ("duplicate symbol"), and pytest imports every test module of a
run. The SDK's checks (kserve_sdk_checks.py) therefore run in a child pytest,
which imports the SDK and not tritonclient's gRPC client.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("kserve_sdk_checks.py")
ROOT = Path(__file__).resolve().parents[3]

#: A child interpreter and a server of its own: make test-fast skips it.
pytestmark = pytest.mark.slow


def test_kserves_sdk_reads_every_answer_in_a_process_of_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in .*", summary), summary  # none skipped, none missing
