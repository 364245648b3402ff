"""``server.models.versions``: numbered folders and Triton's three version policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.models.errors import ModelConfigError
from server.models.versions import VersionPolicy, parse_policy, version_folders


@pytest.mark.parametrize(
    ("written", "policy", "chosen"),
    [
        (None, VersionPolicy("latest", 1), [7]),
        ({"latest": 2}, VersionPolicy("latest", 2), [3, 7]),
        ({"latest": 9}, VersionPolicy("latest", 9), [1, 3, 7]),
        ({"all": True}, VersionPolicy("all"), [1, 3, 7]),
        ({"specific": [7, 1, 7]}, VersionPolicy("specific", versions=(7, 1)), [1, 7]),
    ],
)
def test_each_policy_picks_its_versions(
    written: object, policy: VersionPolicy, chosen: list[int]
) -> None:
    parsed = parse_policy(written, "config.toml")
    assert parsed == policy
    assert parsed.select([3, 1, 7], "m") == chosen
    assert parse_policy(_as_toml(parsed.describe()), "config.toml") == parsed


def _as_toml(described: str) -> object:
    import tomllib

    return tomllib.loads(f"version_policy = {described}")["version_policy"]


@pytest.mark.parametrize(
    "written",
    ["latest", {"latest": 0}, {"latest": True}, {"all": False}, {"specific": []},
     {"specific": [0]}, {"latest": 1, "all": True}, {"newest": 1}],
)  # fmt: skip
def test_anything_else_is_refused_saying_what_to_write(written: object) -> None:
    with pytest.raises(ModelConfigError, match=r"config\.toml: version_policy"):
        parse_policy(written, "config.toml")


def test_a_specific_version_that_does_not_exist_is_named() -> None:
    with pytest.raises(ModelConfigError, match=r"model m: .* names version\(s\) 2, 5"):
        VersionPolicy("specific", versions=(1, 2, 5)).select([1, 3], "m")


def test_only_folders_named_by_a_positive_number_are_versions(tmp_path: Path) -> None:
    for name in ("1", "2", "10", "0", "01", "v3", "calibration"):
        (tmp_path / name).mkdir()
    (tmp_path / "4").write_text("a file, not a folder")
    assert list(version_folders(tmp_path)) == [1, 2, 10]
