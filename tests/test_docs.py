"""The documentation: runnable examples run, every document is linked, links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
