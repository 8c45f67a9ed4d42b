"""Mapper-generated command streams for co-simulation: the very stream ``python -m mapper build`` writes.

:func:`model_stream` compiles a model exactly as :func:`mapper.pipeline.build` does (the same factors from
:func:`mapper.pipeline.load_factors`, the same default nblocks, ``adc_mode="paper"``, co-located stage-1 blocks,
:func:`compiler.program.compile_model`) and takes its test inputs from :func:`compiler.stream_inputs.stream_inputs`,
so ``python -m sim run --model M --hw H --strategy S`` runs, word for word, the ``commands.bin`` of ``python -m
mapper build --model M --hw H --strategy S`` (same seed and nblocks; the defaults are the same on both sides).
The stream: weight programming, then for every mapped matmul LOAD_IN of its seeded input vector, its
MVM/REQUANT/BARRIER program and a READ of its output; HALT.

A folder holding a mapper output (``commands.bin``), or a ``.bin`` stream file, is read as it is, with
:func:`cimisa.stream.read_stream`; it brings its own configuration.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from cimisa.config import HwConfig, load_hw
from cimisa.errors import KitError, ModelError
from cimisa.isa import Command, Isa
from compiler.kinds import AdcMode, Strategy, choices
from compiler.stream_inputs import STREAM_SEED  # the seed mapper build uses: the default here too

__all__ = ["STRATEGIES", "TINY_MODELS", "DEFAULT_HW", "STREAM_SEED", "ModelStream", "model_commands",
           "model_stream", "stream_from_dir", "stream_source", "resolve_stream"]

#: Placement strategies of the mapper (:class:`compiler.kinds.Strategy`, as plain words).
STRATEGIES = choices(Strategy)
#: The zoo's small models with seeded weights, cheap enough for co-simulation.
TINY_MODELS = ("tiny-bert", "tiny-gpt2")
#: Configuration a model is mapped onto when none is given.
DEFAULT_HW = "fpga-tiny"


@dataclass(frozen=True)
class ModelStream:
    """A stream to co-simulate: where it came from, its words, its command count, and its configuration."""

    name: str
    words: tuple[int, ...]
    commands: int
    cfg: HwConfig | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"ModelStream({self.name!r}, commands={self.commands}, words={len(self.words)})"


@functools.lru_cache(maxsize=8)
def _factors(model: str, nblocks: int | None):
    """Return ``(spec, nblocks, factors)`` exactly as ``mapper build`` derives them."""
    from mapper.models import resolve_source  # noqa: PLC0415
    kind, _entry, _folder = resolve_source(model)            # quick: unknown and shape-only models fail here
    if kind == "shape":
        raise ModelError(f"model {model!r} is shape-only (no weights to put in a stream); co-simulate a tiny-* "
                         f"model, a checkpoint or d2s folder, or a mapper build folder with commands.bin")
    from compiler.place import default_nblocks  # noqa: PLC0415
    from mapper.models import load_model_spec  # noqa: PLC0415 (torch loads only when a model is mapped)
    from mapper.pipeline import check_nblocks, folder_nblocks, load_factors  # noqa: PLC0415
    spec = load_model_spec(model)
    if not spec.has_weights:
        raise ModelError(f"model {model!r} has no weights to put in a stream")
    if nblocks is None:
        nblocks = folder_nblocks(model) or default_nblocks(spec)
    check_nblocks(spec, nblocks)
    return spec, nblocks, load_factors(model, spec, nblocks)


def model_commands(model: str, hw: HwConfig, strategy: str = "auto", *, nblocks: int | None = None,
                   seed: int = STREAM_SEED) -> list[Command]:
    """Return the full command stream of ``model`` on ``hw`` with ``strategy``, inputs drawn with ``seed``.

    ``nblocks`` None is the mapper's default (a d2s folder's own, else ``2**round(log2(sqrt(d_model)))``).
    """
    if strategy not in STRATEGIES:
        raise KitError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if nblocks is not None and (isinstance(nblocks, bool) or int(nblocks) != nblocks or nblocks < 1):
        raise KitError(f"nblocks must be a positive integer, not {nblocks!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise KitError(f"seed must be a non-negative integer, not {seed!r}")
    from compiler.program import compile_model  # noqa: PLC0415
    from compiler.stream_inputs import stream_inputs  # noqa: PLC0415
    spec, _nb, factors = _factors(model, None if nblocks is None else int(nblocks))
    # mapper.pipeline.build: evaluate() places with these options, compile_model() the same placement.
    compiled = compile_model(spec, factors, hw, strategy=Strategy(strategy), adc_mode=AdcMode.PAPER,
                             colocate=True)
    return compiled.full_stream(stream_inputs(compiled, int(seed)))


def model_stream(model: str, hw: HwConfig, strategy: str = "auto", *, nblocks: int | None = None,
                 seed: int = STREAM_SEED) -> ModelStream:
    """Return :func:`model_commands` encoded, as a :class:`ModelStream` named ``<model>/<strategy>``."""
    cmds = model_commands(model, hw, strategy, nblocks=nblocks, seed=seed)
    return ModelStream(f"{model}/{strategy}", tuple(Isa.of(hw).encode(cmds)), len(cmds), hw)


def _read(path: Path, hw: HwConfig | None, name: str) -> ModelStream:
    from cimisa.stream import read_stream  # noqa: PLC0415
    sf = read_stream(path, expect=hw)
    return ModelStream(name, tuple(sf.words), sf.commands, hw if hw is not None else sf.cfg)


def stream_from_dir(folder: str | os.PathLike, hw: HwConfig | None = None) -> ModelStream:
    """Return the stream in a mapper output folder (``commands.bin``), checked to be built for ``hw`` if given."""
    return _read(Path(folder) / "commands.bin", hw, str(folder))


def stream_source(model: str | os.PathLike) -> Path | None:
    """Return the stream file ``--model`` names (a folder's ``commands.bin`` or a ``.bin`` file), else None.

    Raises :class:`~cimisa.errors.ModelError` for a mapper build folder without a stream (``--no-weights``).
    """
    p = Path(model)
    if p.is_dir():
        if (p / "commands.bin").is_file():
            return p / "commands.bin"
        if (p / "report.json").is_file() and (p / "mapping.json").is_file():
            raise ModelError(f"{str(model)!r} is a mapper build folder without commands.bin (built with "
                             f"--no-weights?); rebuild it with weights")
        return None
    if p.is_file() and p.name.endswith(".bin"):
        return p
    return None


def resolve_stream(model: str, hw: HwConfig | None = None, strategy: str = "auto", *, nblocks: int | None = None,
                   seed: int = STREAM_SEED) -> ModelStream:
    """Return the stream for ``--model``: a folder with ``commands.bin`` or a ``.bin`` file as it is (on its own
    configuration when ``hw`` is None), else a model the mapper can load, mapped onto ``hw`` (default
    :data:`DEFAULT_HW`). The result's ``cfg`` is the configuration the stream runs on.
    """
    src = stream_source(model)
    if src is not None:
        return _read(src, hw, str(model))
    if hw is None:
        hw = load_hw(DEFAULT_HW)
    try:
        return model_stream(model, hw, strategy, nblocks=nblocks, seed=seed)
    except KitError:
        raise
    except ImportError as exc:
        raise ModelError(f"cannot map {model!r}: the mapper is not available ({exc})") from None
