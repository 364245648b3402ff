"""The settings as command-line options, shared by every subcommand that loads a model."""

from __future__ import annotations

import argparse
from typing import Final

from pydantic_settings import CliSettingsSource

from server.config import Settings, load_settings

SETTINGS_EPILOG: Final = (
    "Every option is also an environment variable: --max-batch-size is "
    "BATCHSERVE_MAX_BATCH_SIZE. An option wins over the environment, which wins over "
    "a .env file in the working directory. docs/configuration.md explains each setting."
)


def add_settings_options(parser: argparse.ArgumentParser, prog: str) -> None:
    """A kebab-case option for every setting (derived by pydantic-settings from the fields)."""
    source: CliSettingsSource[Settings] = CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name=prog,
    )
    parser.set_defaults(settings_source=source)


def settings_from(args: argparse.Namespace, **fixed: object) -> Settings:
    """Options, then the environment, then ``.env``; ``fixed`` values win over all of them."""
    source: CliSettingsSource[Settings] = args.settings_source
    return load_settings(source(parsed_args=args), **fixed)
