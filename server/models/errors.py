"""Why a model cannot be served: the errors every step of getting a model raises.

Torch-free, so that the CLI can check the settings (and report what is wrong)
before it loads torch.
"""

from __future__ import annotations


class ModelLoadError(Exception):
    """The model or its weights cannot be loaded; the message names the remedy."""


class ModelConfigError(ModelLoadError):
    """The settings name a model, weights or repository that does not exist or is malformed.

    A configuration error (exit status 2), where a :class:`ModelLoadError` is a
    model that exists but fails to load (exit status 3).
    """
