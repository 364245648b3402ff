"""The settings as command-line options, shared by every subcommand that loads a model.

pydantic-settings' ``CliSettingsSource`` derives one kebab-case option per
setting, its help from the field's docstring and its environment variable;
the ``add_argument_method`` hook below only places each option in its group,
names its value for a reader (``PATH``, ``N``) and says its default once.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Collection
from typing import Any, Final

from pydantic_settings import CliSettingsSource

from server.config import Settings, load_settings

SETTINGS_EPILOG: Final = (
    "Every option is also an environment variable, shown as [env: ...]. An option wins "
    "over the environment, which wins over a .env file in the working directory. "
    "docs/configuration.md explains each setting."
)

#: Each setting's group in --help, in the order they are shown.
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "model": ("model", "weights", "model_name", "labels", "resize_size", "crop_size", "mean",
              "std", "interpolation", "output", "model_repository", "model_dir", "default_model",
              "model_control", "load_models", "poll_interval_s"),
    "engine": ("device", "engine", "precision", "calibration_dir", "held_out_dir",
               "int8_min_agreement", "int8_fp32_ops", "compile", "cache_dir", "workers",
               "threads_per_worker", "cpu_streams", "preprocess_threads", "weight"),
    "batching": ("max_batch_size", "max_batch_wait_ms", "max_queue_size", "request_timeout_s"),
    "limits": ("max_upload_mb", "max_files", "max_request_mb", "max_image_pixels",
               "body_timeout_s", "rate_limit"),
    "security": ("api_keys", "admin_keys", "protect_metrics", "cors_origins", "trusted_proxies"),
    "network": ("host", "port", "grpc_port", "shutdown_timeout_s"),
    "logging": ("log_level", "log_format", "tracing"),
}  # fmt: skip
GROUP_TITLES: Final = {
    "model": "model: what is served and how its images are prepared",
    "engine": "engine: where and how the model runs",
    "batching": "batching: how requests are gathered and how long they may wait",
    "limits": "limits: what one request or client may send",
    "security": "security: API keys, CORS and proxies",
    "network": "network: where to listen, and shutting down",
    "logging": "logging and tracing",
}
#: What a reader sees for a value, by the type pydantic-settings names.
_METAVARS: Final = {
    "str": "TEXT", "int": "N", "float": "NUMBER", "Path": "PATH", "SecretStr": "KEYS",
    "tuple[float,float,float]": "A,B,C", "{int,auto}": "{N,auto}",
}  # fmt: skip
#: Settings whose value is better named than by its type.
_NAMED: Final = {
    "model": "NAME|FILE", "weights": "NAME|FILE", "device": "DEVICE", "rate_limit": "RATE",
    "host": "ADDRESS", "trusted_proxies": "CIDRS", "cors_origins": "ORIGINS",
    "model_name": "NAME", "default_model": "NAME", "int8_fp32_ops": "OPS",
    "load_models": "NAMES",
}  # fmt: skip
_HELP: Final = re.compile(
    r"^(?P<doc>.*?)(?: \(default: (?P<default>[^()]*)\))? \[env: (?P<env>\w+)\]$"
)


def _help(text: str) -> str:
    """The docstring, its default once (unless the docstring says it), then the variable."""
    match = _HELP.match(text)
    if match is None:  # a format this module does not know: shown as pydantic-settings wrote it
        return text
    doc, default, env = match["doc"], match["default"], match["env"]
    if default not in (None, "", "null") and "(default:" not in doc:
        doc = f"{doc.rstrip('.')} (default: {default})."
    return f"{doc} [env: {env}]"


class _Options:
    """Adds each option to its group, readably; leaves out settings a subcommand does not use."""

    def __init__(
        self, parser: argparse.ArgumentParser, groups: Collection[str], omit: Collection[str]
    ) -> None:
        self.groups = {name: parser.add_argument_group(GROUP_TITLES[name]) for name in groups}
        self.group_of = {
            field: name for name in groups for field in GROUPS[name] if field not in omit
        }

    def add(self, parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> Any:
        group = self.group_of.get(kwargs.get("dest", ""))
        if group is None:
            return None
        if "metavar" in kwargs:
            kwargs["metavar"] = _NAMED.get(kwargs["dest"]) or _METAVARS.get(
                kwargs["metavar"], kwargs["metavar"]
            )
        kwargs["help"] = _help(kwargs.get("help", ""))
        return self.groups[group].add_argument(*names, **kwargs)


def add_settings_options(
    parser: argparse.ArgumentParser,
    prog: str,
    groups: Collection[str] = tuple(GROUPS),
    omit: Collection[str] = (),
) -> None:
    """A kebab-case option for every setting of ``groups`` but ``omit``, grouped in --help."""
    options = _Options(parser, groups, omit)
    source: CliSettingsSource[Settings] = CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_show_env_vars=True,
        cli_use_class_docs_for_groups=False,
        cli_prog_name=prog,
        add_argument_method=options.add,
    )
    parser.set_defaults(settings_source=source)


def settings_from(args: argparse.Namespace, **fixed: object) -> Settings:
    """Options, then the environment, then ``.env``; ``fixed`` values win over all of them."""
    source: CliSettingsSource[Settings] = args.settings_source
    return load_settings(source(parsed_args=args), **fixed)
