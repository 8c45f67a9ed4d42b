"""Mapper-generated command streams for co-simulation.

:func:`model_stream` maps a model through the mapper's library API (:func:`mapper.run.prepare` for the Monarch
factors, :func:`mapper.program.compile_model` for placement, schedule and programs) and returns the complete
stream of :meth:`~mapper.program.CompiledModel.full_stream`: weight programming, then for every mapped matmul
LOAD_IN of a seeded random input vector, its MVM/REQUANT/BARRIER program and a READ of its output; HALT.

A folder holding a mapper output (``commands.bin``) is read as it is, with :func:`cimisa.stream.read_stream`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimisa.config import HwConfig
from cimisa.errors import KitError, ModelError
from cimisa.isa import Command, Isa

__all__ = ["STRATEGIES", "TINY_MODELS", "ModelStream", "model_stream", "stream_from_dir", "resolve_stream"]

#: Placement strategies of the mapper.
STRATEGIES = ("linear", "sparse", "dense", "auto")
#: The zoo's small models with seeded weights, cheap enough for co-simulation.
TINY_MODELS = ("tiny-bert", "tiny-gpt2")


@dataclass(frozen=True)
class ModelStream:
    """A stream to co-simulate: where it came from, its words, and its commands when known."""

    name: str
    words: tuple[int, ...]
    commands: int

    def __repr__(self) -> str:
        return f"ModelStream({self.name!r}, commands={self.commands}, words={len(self.words)})"


@functools.lru_cache(maxsize=8)
def _prepared(model: str, nblocks: int):
    from mapper.run import prepare  # noqa: PLC0415 (torch and transformers load only when a model is mapped)
    return prepare(model, nblocks=nblocks, show_progress=False)


def model_commands(model: str, hw: HwConfig, strategy: str = "auto", *, nblocks: int = 4,
                   seed: int = 0) -> list[Command]:
    """Return the full command stream of ``model`` on ``hw`` with ``strategy``, inputs drawn with ``seed``."""
    if strategy not in STRATEGIES:
        raise KitError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    from mapper.program import compile_model  # noqa: PLC0415
    prep = _prepared(model, nblocks)
    compiled = compile_model(prep.spec, prep.factors, hw, strategy=strategy)
    lo, hi = Isa.of(hw).elem_range("input")
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, p in compiled.programs.items():
        if p.depends_on:                         # co-located programs share their dependency's input
            inputs[name] = inputs[p.depends_on[0]]
        else:
            inputs[name] = rng.integers(lo, hi + 1, p.in_len)
    return compiled.full_stream(inputs)


def model_stream(model: str, hw: HwConfig, strategy: str = "auto", *, nblocks: int = 4,
                 seed: int = 0) -> ModelStream:
    """Return :func:`model_commands` encoded, as a :class:`ModelStream` named ``<model>/<strategy>``."""
    cmds = model_commands(model, hw, strategy, nblocks=nblocks, seed=seed)
    return ModelStream(f"{model}/{strategy}", tuple(Isa.of(hw).encode(cmds)), len(cmds))


def stream_from_dir(folder: str | os.PathLike, hw: HwConfig) -> ModelStream:
    """Return the stream in a mapper output folder (``commands.bin``), checked to be built for ``hw``."""
    from cimisa.stream import read_stream  # noqa: PLC0415
    path = Path(folder) / "commands.bin"
    sf = read_stream(path, expect=hw)
    return ModelStream(str(folder), tuple(sf.words), sf.commands)


def resolve_stream(model: str, hw: HwConfig, strategy: str = "auto", *, nblocks: int = 4,
                   seed: int = 0) -> ModelStream:
    """Return the stream for ``--model``: a folder with ``commands.bin``, else a model the mapper can load."""
    p = Path(model)
    if p.is_dir() and (p / "commands.bin").is_file():
        return stream_from_dir(p, hw)
    if p.is_file() and p.name.endswith(".bin"):
        from cimisa.stream import read_stream  # noqa: PLC0415
        sf = read_stream(p, expect=hw)
        return ModelStream(str(p), tuple(sf.words), sf.commands)
    try:
        return model_stream(model, hw, strategy, nblocks=nblocks, seed=seed)
    except KitError:
        raise
    except ImportError as exc:
        raise ModelError(f"cannot map {model!r}: the mapper is not available ({exc})") from None
