"""Hugging Face plumbing shared by the model modules: offline mode, quiet logging, one-line error text.

Importing this module sets ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` (unless already set): nothing in the kit
may download at run time.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__all__ = ["quiet_transformers", "short"]


def quiet_transformers() -> None:
    """Silence ``transformers`` warnings and progress bars (the kit reports problems itself)."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415
    hf_logging.set_verbosity_error()
    try:
        hf_logging.disable_progress_bar()
    except AttributeError:  # pragma: no cover - older transformers
        pass


def short(exc: BaseException) -> str:
    """Return ``exc`` as one line of at most 200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
