"""The sweep grid file: which settings vary, which are fixed, and the points they span.

A grid is a TOML file (or a shipped name, :func:`grid_path`)::

    [sweep]
    name = "bert-large-small"            # default: the file name without .toml
    description = "strategies x ADCs"

    [fixed]                              # settings shared by every point
    model = "bert-large"
    weights = false
    n_arrays = 65536                     # a configuration key
    [fixed.cost]                         # configuration cost keys (or "cost.t_adc_ns" = 2.0 above)
    t_adc_ns = 2.0

    [axes]                               # name -> list of values; points = every combination, in file order
    strategy = ["sparse", "dense", "auto"]
    adcs_per_array = [4, 8, 16]
    array = [{rows = 128, cols = 128}, {rows = 256, cols = 256}]   # a compound axis: tables of settings

A setting is a build option (:data:`OPTIONS`: the keywords of :func:`mapper.pipeline.build`) or a configuration
key (:func:`config_keys`: every :class:`cimisa.config.HwConfig` field, and ``<table>.<key>`` for its nested
tables such as ``cost``). Every problem of the file is reported in one :class:`~cimisa.errors.ConfigError`.
Values a configuration rejects (a combination such as ``adcs_per_array`` above ``cols``) are not grid errors:
that point becomes a row with its error (:func:`resolve`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cimisa.config import BUILTIN, MAX_CONFIG_BYTES, CostParams, HwConfig, _show, load_hw, read_limited
from cimisa.errors import ConfigError
from compiler.budget import BUDGETS
from compiler.kinds import AdcMode, Strategy, choices

__all__ = ["OPTIONS", "COLUMN", "COST_PRESETS", "MAX_POINTS", "SCHEMA", "Axis", "Grid", "Point", "config_keys",
           "grid_path", "shipped_grids", "load_grid", "points", "resolve", "point_id", "kit_version"]

#: Cost-model presets of the ``cost`` option (:meth:`cimisa.config.CostParams.preset`).
COST_PRESETS = ("kit", "paper")
#: Most points one grid may span.
MAX_POINTS = 100_000
#: Version of the row layout (:mod:`mapper.sweep.point`); part of every point's hash.
SCHEMA = 1


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and v.isprintable()


#: Build options: name -> (default, check, what a value must be). ``cost`` is the cost preset (applied before
#: any ``cost.<key>``), ``adcs`` the ADCs per array (same as the configuration key ``adcs_per_array``).
OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "model": (None, _text, "a built-in model name or a model folder"),
    "hw": ("paper-256", _text, "a built-in configuration name or a TOML/JSON file"),
    "nblocks": (None, _positive, "a positive integer"),
    "strategy": ("auto", lambda v: v in choices(Strategy), "one of " + ", ".join(choices(Strategy))),
    "adcs": (None, _positive, "a positive integer"),
    "arrays": (None, lambda v: _positive(v) and v <= 1_000_000, "an integer in 1..1000000"),
    "weights": (True, lambda v: isinstance(v, bool), "true or false"),
    "adc_mode": ("paper", lambda v: v in choices(AdcMode), "one of " + ", ".join(choices(AdcMode))),
    "cost": (None, lambda v: v in COST_PRESETS, "one of " + ", ".join(COST_PRESETS)),
    "colocate": (True, lambda v: isinstance(v, bool), "true or false"),
    "row_steps": (None, _positive, "a positive integer"),
    "budget": ("fixed", lambda v: v in BUDGETS, "one of " + ", ".join(BUDGETS)),
    "reference": (None, lambda v: v in choices(Strategy), "one of " + ", ".join(choices(Strategy))),
    "weight_reload": (False, lambda v: isinstance(v, bool), "true or false"),
    "prefill_tokens": (None, _positive, "a positive integer"),
    "decode_tokens": (None, _positive, "a positive integer"),
    "simulate": (True, lambda v: isinstance(v, bool), "true or false"),
    "max_error": (None, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e9,
                  "a number >= 0 (the bound of adc_mode accuracy)"),
}
#: Row columns of options whose name is also a figure's (``arrays``: the figure is the arrays used).
COLUMN = {"arrays": "arrays_budget"}
#: Options that decide the hardware configuration (folded into it for the hash).
_CONFIG_OPTIONS = ("hw", "cost", "adcs")


def config_keys() -> tuple[str, ...]:
    """Every configuration key a grid may set: the fields of :class:`HwConfig`, nested tables as ``t.key``."""
    ref = BUILTIN["paper-256"]
    out = []
    for f in dataclasses.fields(HwConfig):
        sub = getattr(ref, f.name)
        if dataclasses.is_dataclass(sub):
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(sub)]
        else:
            out.append(f.name)
    return tuple(out)


def kit_version() -> str:
    """The installed kit's version (part of every point's hash)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    try:
        return version("cim-monarch-kit")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Axis:
    """One axis: a setting and its values, or (``compound``) a label and tables of settings set together."""

    name: str
    values: tuple
    compound: bool = False

    def label(self, i: int) -> Any:
        """The value shown in the axis' column for its ``i``-th value."""
        v = self.values[i]
        return ",".join(f"{k}={v[k]}" for k in v) if self.compound else v


@dataclass(frozen=True, eq=False)
class Grid:
    """A parsed, validated grid file."""

    name: str
    description: str
    source: str
    fixed: dict
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        """Number of points."""
        n = 1
        for a in self.axes:
            n *= len(a.values)
        return n

    def values(self, key: str) -> list:
        """The distinct values ``key`` takes over the grid (the default when nothing sets it)."""
        vals = [self.fixed[key]] if key in self.fixed else []
        for a in self.axes:
            vals += [v[key] for v in a.values if key in v] if a.compound else list(a.values) * (a.name == key)
        vals = list(dict.fromkeys(vals))
        if not vals and key in OPTIONS and OPTIONS[key][0] is not None:
            vals = [OPTIONS[key][0]]
        return vals

    def derive(self, *, axes: dict | None = None, fixed: dict | None = None) -> Grid:
        """Return this grid with some axes' values and fixed settings replaced (or added), validated again.

        ``grid.derive(axes={"model": ["bert-large"]}, fixed={"hw": "my.toml"})`` is how ``mapper reproduce``
        applies ``--models`` and ``--hw`` to the shipped ``reproduce`` grid.
        """
        data_axes = {a.name: [dict(v) for v in a.values] if a.compound else list(a.values) for a in self.axes}
        data_fixed = dict(self.fixed)
        for k, v in (fixed or {}).items():
            data_axes.pop(k, None)
            data_fixed[k] = v
        for k, v in (axes or {}).items():
            data_fixed.pop(k, None)
            data_axes[k] = v
        data = {"sweep": {"name": self.name, "description": self.description}, "fixed": data_fixed,
                "axes": data_axes}
        return parse_grid(data, origin=self.source, default_name=self.name)

    @property
    def hash(self) -> str:
        """SHA-256 of the grid's content (name, fixed settings, axes; not comments or layout)."""
        data = {"name": self.name, "fixed": self.fixed,
                "axes": [[a.name, list(a.values), a.compound] for a in self.axes]}
        return hashlib.sha256(_canonical(data).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Point:
    """One point: its row inputs and what the build needs (``hw`` None when the settings are invalid)."""

    index: int
    id: str
    inputs: dict
    model: str
    hw: HwConfig | None
    options: dict
    error: str | None = None


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def shipped_grids() -> list[str]:
    """Names of the grids shipped with the kit (``mapper/sweep/grids/*.toml``)."""
    folder = resources.files("mapper.sweep") / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def grid_path(grid: str) -> Path:
    """Return the file of ``--grid``: a path (it ends in ``.toml`` or holds a ``/``) or a shipped name."""
    if grid.endswith(".toml") or os.sep in grid or "/" in grid:
        return Path(grid)
    if grid not in shipped_grids():
        raise ConfigError(f"unknown grid {grid!r} (shipped: {', '.join(shipped_grids())}; or a .toml file)")
    return Path(str(resources.files("mapper.sweep") / "grids" / f"{grid}.toml"))


def _flatten(table: dict, prefix: str = "") -> dict:
    """Nested tables of settings -> dotted keys (``{"cost": {"t_adc_ns": 1}}`` -> ``{"cost.t_adc_ns": 1}``)."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_value(key: str, v: Any, where: str, problems: list[str]) -> None:
    if key in OPTIONS:
        _, ok, what = OPTIONS[key]
        if not ok(v):
            problems.append(f"{where}: {key} must be {what}, not {_show(v)}")
    elif isinstance(v, (list, dict)) or v is None:
        problems.append(f"{where}: {key} must be a single value, not {_show(v)}")


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and validate a grid file; every problem is listed in one :class:`ConfigError`."""
    raw = read_limited(path, MAX_CONFIG_BYTES, what="grid file", error=ConfigError)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    return parse_grid(data, origin=str(path), default_name=Path(path).name.removesuffix(".toml"))


def parse_grid(data: dict, *, origin: str = "grid", default_name: str = "sweep") -> Grid:
    """Validate a grid given as data (what :func:`load_grid` read)."""
    known = set(OPTIONS) | set(config_keys())
    problems = [f"unknown table [{k}] (a grid has [sweep], [fixed] and [axes])"
                for k in data if k not in ("sweep", "fixed", "axes")]
    head = data.get("sweep", {})
    if not isinstance(head, dict):
        problems.append("[sweep] must be a table")
        head = {}
    problems += [f"[sweep]: unknown key {k!r} (name, description)" for k in head if k not in ("name", "description")]
    name = head.get("name", default_name)
    if not _text(name) or len(name) > 100 or any(c in name for c in "/\\"):
        problems.append(f"[sweep]: name must be a short printable name without slashes, not {_show(name)}")
    desc = head.get("description", "")
    if not isinstance(desc, str):
        problems.append(f"[sweep]: description must be a string, not {_show(desc)}")
    fixed_raw, axes_raw = data.get("fixed", {}), data.get("axes", {})
    for tname, t in (("fixed", fixed_raw), ("axes", axes_raw)):
        if not isinstance(t, dict):
            problems.append(f"[{tname}] must be a table, not {_show(t)}")
    fixed = _flatten(fixed_raw) if isinstance(fixed_raw, dict) else {}
    for k, v in fixed.items():
        if k not in known:
            problems.append(f"[fixed]: unknown setting {k!r}")
        else:
            _check_value(k, v, "[fixed]", problems)
    axes: list[Axis] = []
    set_by: dict[str, str] = {k: "[fixed]" for k in fixed}
    for name_, values in (_axis_items(axes_raw) if isinstance(axes_raw, dict) else []):
        where = f"[axes] {name_}"
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: must be a non-empty list of values, not {_show(values)}")
            continue
        compound = name_ not in known
        if compound and not all(isinstance(v, dict) for v in values):
            problems.append(f"[axes]: unknown setting {name_!r}" if not any(isinstance(v, dict) for v in values)
                            else f"{where}: a compound axis' values must all be tables of settings")
            continue
        keys = []
        for v in values:
            flat = _flatten(v) if compound else {name_: v}
            for k, x in flat.items():
                if k not in known:
                    problems.append(f"{where}: unknown setting {k!r}")
                else:
                    _check_value(k, x, where, problems)
                    keys.append(k)
        vals = [_flatten(v) for v in values] if compound else list(values)
        if len({_canonical(v) for v in vals}) != len(vals):
            problems.append(f"{where}: repeats a value")
        for k in dict.fromkeys(keys):
            if k in set_by:
                problems.append(f"{where}: {k} is already set by {set_by[k]}")
            set_by[k] = where
        axes.append(Axis(name_, tuple(vals), compound))
    if "adcs" in set_by and "adcs_per_array" in set_by:
        problems.append("set adcs or adcs_per_array, not both")
    if "model" not in set_by:
        problems.append("no model: set model in [fixed] or as an axis")
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    grid = Grid(name, desc, origin, fixed, tuple(axes))
    if grid.size > MAX_POINTS:
        raise ConfigError(f"{origin}: the grid spans {grid.size} points, more than the limit of {MAX_POINTS}")
    return grid


def _axis_items(axes: dict):
    """Axes in file order; a table of lists (``[axes.cost]``) gives one axis per dotted key."""
    for k, v in axes.items():
        if isinstance(v, dict):
            yield from _axis_items({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            yield k, v


def resolve(settings: dict, _hw_cache: dict | None = None) -> tuple[HwConfig, dict]:
    """Return ``(configuration, build options)`` for one point's settings; a :class:`ConfigError` if invalid.

    The configuration is ``hw``, then the ``cost`` preset, then every configuration key (``adcs`` sets
    ``adcs_per_array``); the options are the remaining build options with their defaults filled in.
    """
    hw_spec = settings.get("hw", OPTIONS["hw"][0])
    cache = {} if _hw_cache is None else _hw_cache
    if hw_spec not in cache:
        cache[hw_spec] = load_hw(hw_spec)
    cfg = cache[hw_spec]
    if settings.get("cost") is not None:
        cfg = cfg.replace(cost=CostParams.preset(settings["cost"]))
    changes: dict[str, Any] = {}
    for k, v in settings.items():
        if k in OPTIONS:
            continue
        table, _, sub = k.partition(".")
        if sub:
            changes.setdefault(table, {})[sub] = v
        else:
            changes[k] = v
    if settings.get("adcs") is not None:
        changes["adcs_per_array"] = settings["adcs"]
    for table in [t for t, v in changes.items() if isinstance(v, dict)]:
        changes[table] = dataclasses.replace(getattr(cfg, table), **changes[table])
    if changes:
        cfg = cfg.replace(**changes)
    opts = {k: settings.get(k, d) for k, (d, _, _) in OPTIONS.items() if k not in _CONFIG_OPTIONS + ("model",)}
    return cfg, opts


def point_id(model_key: Any, config: dict, options: dict, version: str) -> str:
    """Hex SHA-256 of the canonical JSON of a point's model, configuration, options, kit version and schema."""
    return hashlib.sha256(_canonical({"model": model_key, "config": config, "options": options,
                                      "kit": version, "schema": SCHEMA}).encode()).hexdigest()


def points(grid: Grid, model_keys: dict[str, Any] | None = None) -> list[Point]:
    """Every point of ``grid`` in a fixed order (the last axis varies fastest).

    ``model_keys`` maps a model as written to what identifies its content (:func:`mapper.sweep.store.model_key`);
    by default the name itself. A point whose settings no configuration accepts carries its error.
    """
    keys = model_keys or {}
    version = kit_version()
    hw_cache: dict = {}
    out = []
    for index, combo in enumerate(itertools.product(*(range(len(a.values)) for a in grid.axes))):
        settings = dict(grid.fixed)
        inputs = {}
        for a, i in zip(grid.axes, combo, strict=True):
            settings.update(a.values[i] if a.compound else {a.name: a.values[i]})
            inputs[COLUMN.get(a.name, a.name)] = a.label(i)
        for k, (d, _, _) in OPTIONS.items():
            inputs.setdefault(COLUMN.get(k, k), settings.get(k, d))
        model = settings["model"]
        mkey = keys.get(model, model)
        if os.path.isdir(model):              # a folder: the same one for a worker in another folder
            model = os.path.abspath(model)
        try:
            cfg, opts = resolve(settings, hw_cache)
        except ConfigError as exc:
            raw = {k: v for k, v in settings.items() if k != "model"}
            pid = point_id(mkey, {"invalid": raw}, {}, version)
            out.append(Point(index, pid, inputs, model, None, {}, exc.one_line()))
            continue
        out.append(Point(index, point_id(mkey, cfg.to_dict(), opts, version), inputs, model, cfg, opts))
    return out
