"""The documentation: runnable examples run, every document is linked, links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_the_standalone_batcher_example_runs() -> None:
    (example,) = _python_blocks(ROOT / "docs" / "batching.md")
    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 2, 3]"


def test_the_readme_gives_the_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1]
    assert quick_start.index("make serve") < quick_start.index("make test")


def test_the_readme_links_every_document() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name == "benchmarks-compiled.md":
            continue  # linked from performance.md, a companion of benchmarks.md
        assert f"(docs/{doc.name})" in readme, doc.name


def test_relative_links_in_the_docs_point_to_files() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} -> {target}"


#: A measured figure: a throughput, a latency, or a speed-up.
_FIGURE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s?(?:images/s|img/s|req/s|requests/s|ms\b|\u00d7|x\b)"
)
#: An approximate duration ("~0.8 s", "~2 minutes"): a measurement remembered, not a setting.
_APPROXIMATE_TIME = re.compile(r"~ ?(\d+(?:\.\d+)?) ?(?:s|seconds|minutes)\b")
REPORTS = sorted((ROOT / "docs").glob("benchmarks*.md"))


def _figures(text: str) -> list[str]:
    # Code blocks hold commands and settings (BATCHSERVE_MAX_BATCH_WAIT_MS=5), not results.
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return _FIGURE.findall(prose) + _APPROXIMATE_TIME.findall(prose)


def test_every_report_names_its_command_and_its_cpu_with_flags() -> None:
    assert REPORTS
    for report in REPORTS:
        head = report.read_text()[:1500]
        assert re.search(r"make bench|python -m loadtest\.", head), report.name
        assert re.search(r"CPU\b.*; flags: \w+", head), report.name


@pytest.mark.parametrize(
    "doc", sorted(p for p in (ROOT / "docs").glob("*.md") if p not in REPORTS), ids=lambda p: p.name
)
def test_each_figure_a_doc_quotes_is_in_a_benchmark_report(doc: Path) -> None:
    """Numbers come from a report file in the repository, never from memory or another machine."""
    measured = " ".join(report.read_text() for report in REPORTS)
    missing = [figure for figure in _figures(doc.read_text()) if not re.search(
        rf"(?<![\d.]){re.escape(figure)}(?![\d])", measured)]  # fmt: skip
    assert missing == [], f"{doc.name} quotes figures no report holds: {missing}"
