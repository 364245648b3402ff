"""The command's parser: usage errors name their subcommand; --version names the engines."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli.main import (
    ENGINE_LIBRARIES,
    build_parser,
    parse,
    version_text,
    with_default_command,
)


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["serve", "--bogus"], "usage: batchserve serve"),
        (["--bogus"], "usage: batchserve serve"),  # options alone mean serve
        (["predict", "cat.jpg", "--bogus"], "usage: batchserve predict"),
    ],
)
def test_an_unknown_option_prints_its_subcommands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(build_parser(), with_default_command(argv))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert "unrecognized arguments: --bogus" in err


def test_version_names_python_and_each_engine_library_on_its_own_line() -> None:
    lines = version_text().splitlines()
    assert lines[0].startswith("batchserve 0.")
    assert lines[1].startswith("python 3.")
    assert [line.split()[0] for line in lines[2:]] == list(ENGINE_LIBRARIES)
    assert f"torch {importlib.metadata.version('torch')}" in lines


def test_version_is_printed_as_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(build_parser(), ["--version"])
    assert capsys.readouterr().out.splitlines() == version_text().splitlines()


def test_the_exit_statuses_are_in_the_help() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "2 a usage or configuration error" in text
    assert "3 a model that fails to load" in text
    assert "128+N signal N before serving" in text


#: What the command must not load before it serves or quantizes.
HEAVY = {"torch", "torchvision", "openvino", "nncf", "PIL", "numpy", "fastapi", "uvicorn"}


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["serve", "--help"], ["quantize", "--help"], ["--version"],
     ["predict", "tests/data/cat.jpg", "--url", "http://127.0.0.1:9"],
     ["serve", "--model", "absent.pt2"], ["--model-repository", "no-such-folder"]],
    ids=["help", "serve-help", "quantize-help", "version", "predict", "absent-file",
         "absent-repository"],
)  # fmt: skip
def test_help_version_predict_and_refused_settings_load_no_model_code(argv: list[str]) -> None:
    """The modules a fresh interpreter has loaded when the command has answered."""
    code = (
        "import sys\nfrom server.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('\\nLOADED', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    root = Path(__file__).parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    loaded = set(result.stdout.rpartition("LOADED ")[2].split())
    assert "server" in loaded, result.stderr
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
