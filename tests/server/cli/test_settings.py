"""The settings' options: grouped, named for a reader, one default each, the variable shown."""

from __future__ import annotations

import argparse
import re

import pytest

from server.cli.main import build_parser
from server.cli.quantize import QUANTIZE_GROUPS, QUANTIZE_OMITS
from server.cli.settings import GROUP_TITLES, GROUPS
from server.config import Settings


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    chosen: argparse.ArgumentParser = subparsers.choices[name]
    return chosen


def _option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}


def test_every_setting_is_in_exactly_one_group() -> None:
    placed = [field for fields in GROUPS.values() for field in fields]
    assert sorted(placed) == sorted(Settings.model_fields)
    assert set(GROUP_TITLES) == set(GROUPS)


def test_serve_help_shows_the_groups_in_order() -> None:
    text = _subparser("serve").format_help()
    positions = [text.index(f"\n{GROUP_TITLES[name]}:") for name in GROUPS]
    assert positions == sorted(positions)


def test_each_option_reads_name_value_help_default_once_and_variable() -> None:
    text = _subparser("serve").format_help()
    assert re.search(r"--labels PATH\s", text)
    assert re.search(r"--port N\s", text)
    assert re.search(r"--model NAME\|FILE\s", text)
    for python_type in ("{Path,null}", "SecretStr", "str]", "{int,auto}", "tuple[", "null"):
        assert python_type not in text, python_type
    for option, help_text in _option_helps(_subparser("serve")).items():
        if option == "-h":
            continue
        variable = "BATCHSERVE_" + option.removeprefix("--").replace("-", "_").upper()
        assert help_text.endswith(f"[env: {variable}]"), option
        assert help_text.count("(default:") <= 1, option
        assert "(default: )" not in help_text, option


def test_a_default_is_shown_from_the_field_when_the_docstring_names_none() -> None:
    helps = _option_helps(_subparser("serve"))
    assert "(default: 8)." in helps["--max-batch-size"]
    assert "(default: the only model)." in helps["--default-model"]


def test_quantize_lists_only_what_quantizing_uses() -> None:
    options = set(_option_helps(_subparser("quantize")))
    for used in ("--model", "--weights", "--calibration-dir", "--int8-min-agreement",
                 "--cache-dir", "--log-level"):  # fmt: skip
        assert used in options, used
    for unused in ("--port", "--host", "--api-keys", "--max-queue-size", "--rate-limit",
                   "--precision", "--max-upload-mb", "--compile"):  # fmt: skip
        assert unused not in options, unused
    assert set(QUANTIZE_GROUPS) <= set(GROUPS)
    assert all(any(o in GROUPS[g] for g in QUANTIZE_GROUPS) for o in QUANTIZE_OMITS)


@pytest.mark.parametrize("omitted", ["--port", "--api-keys"])
def test_quantize_refuses_a_serving_option_with_its_own_usage(
    omitted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli.main import parse

    with pytest.raises(SystemExit) as stopped:
        parse(build_parser(), ["quantize", omitted, "1"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("usage: batchserve quantize")
