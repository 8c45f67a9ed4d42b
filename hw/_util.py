"""Small helpers shared by the hw components (no components here)."""

from __future__ import annotations

from amaranth.hdl import Const, Value

from cimisa.config import HwConfig

__all__ = ["addr_bits", "check_cfg", "check_int", "div_const", "mod_const"]


def addr_bits(depth: int) -> int:
    """Return the width of an address into ``depth`` entries (at least 1)."""
    return max(1, (depth - 1).bit_length())


def _silence(owner):
    # A component whose constructor fails is never elaborated; don't let Amaranth warn "created but never used".
    if owner is not None:
        owner._MustUse__silence = True


def check_cfg(cfg, owner=None) -> HwConfig:
    """Return ``cfg`` if it is a :class:`HwConfig`, raise TypeError otherwise."""
    if not isinstance(cfg, HwConfig):
        _silence(owner)
        raise TypeError(f"cfg must be a HwConfig, not {cfg!r}")
    return cfg


def check_int(name: str, value, lo: int, hi: int | None = None, owner=None) -> int:
    """Return ``value`` if it is an integer in ``lo..hi``, raise TypeError/ValueError otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        _silence(owner)
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        _silence(owner)
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    return value


def _is_pow2(d: int) -> bool:
    return d & (d - 1) == 0


def div_const(v: Value, d: int) -> Value:
    """Return ``v // d`` for a non-negative value and a constant divisor (a shift when ``d`` is a power of 2)."""
    if _is_pow2(d):
        return v >> (d.bit_length() - 1)
    return v // d


def mod_const(v: Value, d: int) -> Value:
    """Return ``v % d`` for a non-negative value and a constant divisor (a slice when ``d`` is a power of 2)."""
    if d == 1:
        return Const(0, 1)
    if _is_pow2(d):
        return v[:d.bit_length() - 1]
    return v % d
