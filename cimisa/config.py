"""The hardware configuration: one frozen dataclass, the single source of truth for every parameter.

Command field widths (:mod:`cimisa.isa`), RTL parameters (:mod:`hw`), the golden model (:mod:`sw_model`) and the
cost model (:mod:`mapper.cost`) all derive from a :class:`HwConfig`. Configurations come from built-in names
(:data:`BUILTIN`) or from TOML/JSON files, and are validated when created: every violation is listed in one
:class:`~cimisa.errors.ConfigError`.

A file holds the same keys as the dataclass; ``cost`` is a table of :class:`CostParams` keys, and ``base``
names a built-in configuration to start from, so a file only needs what differs::

    base = "paper-256"
    name = "paper-256-a16"
    adcs_per_array = 16
    [cost]
    adc_fom_fj_per_step = 50.0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cimisa.errors import ConfigError

__all__ = ["ACC_BITS", "CostParams", "HwConfig", "BUILTIN", "list_builtin", "load_hw"]

#: Width of every output-buffer accumulator and result word (two's complement, wraps on overflow).
ACC_BITS = 32


@dataclass(frozen=True)
class CostParams:
    """Timing and energy constants of the cost model (:mod:`mapper.cost`); sources in ``docs/cost-model.md``.

    Times are in nanoseconds, energies in picojoules unless the name says otherwise. One MVM activation of
    ``nrows`` rows, ``ncols`` columns and a ``b``-bit ADC costs, per input bit, one array read, ``nrows`` DAC
    drives, the current of its weight cells and ``ncols`` conversions in ``ceil(ncols / adcs_per_array)`` rounds;
    plus ``t_mvm_fixed_ns`` / ``e_mvm_fixed_nj`` once. :meth:`preset` gives the named sets (``kit``, ``paper``).
    """

    #: Time of one analog array read (DAC settle + bit-line integration + sample) for one input bit.
    t_array_read_ns: float = 10.0
    #: DAC energy per driven row per input bit.
    e_row_read_pj: float = 0.05
    #: Bit-line energy per weight cell in the fired window per input bit.
    e_cell_read_pj: float = 0.001
    #: Time of one ADC conversion at ``adc_ref_bits``; SAR time grows linearly with resolution.
    t_adc_ns: float = 1.0
    #: Resolution at which ``t_adc_ns`` is quoted.
    adc_ref_bits: int = 8
    #: Share of the ADC time that grows as ``2**bits`` (ramp/counting ADC) instead of linearly (SAR): 0..1.
    adc_ramp_fraction: float = 0.0
    #: ADC Walden figure of merit, femtojoules per conversion step: energy per conversion = FOM * 2**bits.
    adc_fom_fj_per_step: float = 30.0
    #: Digital shift-add (accumulate one ADC result into an int32 accumulator): energy and time per conversion.
    e_shift_add_pj: float = 0.05
    t_shift_add_ns: float = 0.0
    #: Buffer access energy per element (SRAM read or write of one activation / accumulator).
    e_buffer_pj: float = 1.0
    #: Digital vector unit: elements processed per cycle, cycle time, energy per element-operation
    #: (REQUANT, attention scores, softmax, norms, activations, residual adds).
    digital_lanes: int = 1024
    t_digital_cycle_ns: float = 1.0
    e_digital_op_pj: float = 0.5
    #: Fixed time of the per-vector digital operations (the paper's simulator defaults).
    t_layernorm_ns: float = 50.0
    t_activation_ns: float = 10.0
    t_add_ns: float = 10.0
    #: Communication time between dependent stages (the paper's simulator default 10 ns).
    t_comm_ns: float = 10.0
    #: Weight programming energy per cell write (reported once, not per token).
    e_program_cell_pj: float = 100.0
    #: Fixed time and energy per array MVM (the "paper" preset sets these to 100 ns and 10 nJ).
    t_mvm_fixed_ns: float = 0.0
    e_mvm_fixed_nj: float = 0.0

    @classmethod
    def preset(cls, name: str) -> "CostParams":
        """Return a named set of constants: ``kit`` (the defaults) or ``paper``.

        ``paper``: every array MVM costs 100 ns and 10 nJ (the analog-CIM simulator defaults the paper built
        on), DAC/array-read/ADC time are inside that figure, ADC energy is added from the Walden figure of merit
        (the paper adds ADC cost with Accelergy's ADC plug-in); LayerNorm 50 ns, GeLU 10 ns, add 10 ns,
        communication 10 ns.
        """
        if name == "kit":
            return cls()
        if name == "paper":
            return cls(t_array_read_ns=0.0, e_row_read_pj=0.0, e_cell_read_pj=0.0, t_adc_ns=0.0,
                       t_shift_add_ns=0.0, t_mvm_fixed_ns=100.0, e_mvm_fixed_nj=10.0)
        raise ConfigError(f"unknown cost preset {name!r} (choose kit or paper)")


@dataclass(frozen=True)
class HwConfig:
    """A CIM tile: ``n_arrays`` crossbars of ``rows`` x ``cols`` signed weights, shared input/output buffers.

    Inputs are ``input_bits``-bit two's complement numbers applied bit-serially, LSB first; the MSB's column sum
    is subtracted (see :mod:`cimisa.semantics`). Each column sum passes an ADC of up to ``adc_bits`` bits;
    ``adcs_per_array`` ADCs are shared by the columns of one array. Accumulators are :data:`ACC_BITS` wide.
    ``rows_per_cycle`` is how many rows the FPGA crossbar emulation sums per clock cycle.
    """

    name: str
    rows: int = 256
    cols: int = 256
    n_arrays: int = 8192
    weight_bits: int = 8
    input_bits: int = 8
    adc_bits: int = 8
    adcs_per_array: int = 8
    in_depth: int = 16384
    out_depth: int = 16384
    rows_per_cycle: int = 16
    cost: CostParams = field(default_factory=CostParams)

    def __post_init__(self):
        problems = self.violations()
        if problems:
            raise ConfigError(f"invalid hardware configuration {self.name!r}: " + "; ".join(problems))

    def violations(self) -> list[str]:
        """Return every rule this configuration breaks (empty when valid)."""
        out: list[str] = []

        def rng(name, lo, hi):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                out.append(f"{name} must be an integer, not {v!r}")
                return False
            if not lo <= v <= hi:
                out.append(f"{name} must be in {lo}..{hi}, not {v}")
                return False
            return True

        if not isinstance(self.name, str) or not self.name:
            out.append(f"name must be a non-empty string, not {self.name!r}")
        ok_rows = rng("rows", 2, 4096)
        ok_cols = rng("cols", 2, 4096)
        rng("n_arrays", 1, 1 << 20)
        rng("weight_bits", 2, 16)
        rng("input_bits", 2, 16)
        rng("adc_bits", 1, 24)
        if ok_cols:
            rng("adcs_per_array", 1, self.cols)
        rng("in_depth", 2, 1 << 24)
        rng("out_depth", 2, 1 << 24)
        if ok_rows and rng("rows_per_cycle", 1, self.rows) and self.rows % self.rows_per_cycle:
            out.append(f"rows_per_cycle must divide rows ({self.rows}), not {self.rows_per_cycle}")
        if isinstance(self.adc_bits, int) and isinstance(self.weight_bits, int) and ok_rows:
            if self.adc_bits > self.lossless_adc_bits:
                out.append(f"adc_bits must be at most {self.lossless_adc_bits} (lossless for {self.rows} rows of "
                           f"{self.weight_bits}-bit weights), not {self.adc_bits}")
        if not isinstance(self.cost, CostParams):
            out.append(f"cost must be a CostParams, not {type(self.cost).__name__}")
        else:
            for f in fields(CostParams):
                v = getattr(self.cost, f.name)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
                    out.append(f"cost.{f.name} must be a finite number >= 0, not {v!r}")
            if isinstance(self.cost.adc_ref_bits, (int, float)) and self.cost.adc_ref_bits < 1:
                out.append(f"cost.adc_ref_bits must be >= 1, not {self.cost.adc_ref_bits!r}")
        return out

    # ---- derived quantities -------------------------------------------------------------------------------
    @property
    def cells_per_array(self) -> int:
        """Weight cells in one array."""
        return self.rows * self.cols

    @property
    def lossless_adc_bits(self) -> int:
        """ADC resolution at which a full-height column sum of one input bit never saturates."""
        wmin = -(1 << (self.weight_bits - 1))
        lo = wmin * self.rows  # most negative column sum
        hi = ((1 << (self.weight_bits - 1)) - 1) * self.rows
        bits = 1
        while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
            bits += 1
        return bits

    def lossless(self) -> "HwConfig":
        """Return this configuration with ADCs wide enough that no MVM loses information."""
        return self.replace(adc_bits=self.lossless_adc_bits, name=f"{self.name}-lossless"
                            if not self.name.endswith("-lossless") else self.name)

    def replace(self, **changes: Any) -> "HwConfig":
        """Return a copy with ``changes`` applied and validated (``cost`` may be a dict of cost changes)."""
        if isinstance(changes.get("cost"), dict):
            changes["cost"] = dataclasses.replace(self.cost, **changes["cost"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain JSON-compatible data."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Return canonical JSON (sorted keys, no spaces) of the configuration."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def arch_hash(self) -> str:
        """Hex SHA-256 (16 digits) of the architectural fields: everything but ``name`` and ``cost``.

        Two configurations with the same hash run the same command streams with the same results.
        """
        d = self.to_dict()
        d.pop("name")
        d.pop("cost")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        """Short name for files built from this configuration, e.g. ``r32c32x64_w4i8a10``."""
        return (f"r{self.rows}c{self.cols}x{self.n_arrays}_w{self.weight_bits}i{self.input_bits}"
                f"a{self.adc_bits}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "configuration") -> "HwConfig":
        """Build a configuration from a dict (as read from TOML/JSON), listing every problem in one error."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a table of settings, not {type(data).__name__}")
        data = dict(data)
        base = data.pop("base", None)
        problems: list[str] = []
        if base is not None:
            if base not in BUILTIN:
                raise ConfigError(f"{origin}: unknown base configuration {base!r} "
                                  f"(built-in: {', '.join(list_builtin())})")
            merged = BUILTIN[base].to_dict()
        else:
            merged = {}
        cost = dict(merged.pop("cost", {}))
        user_cost = data.pop("cost", {})
        if not isinstance(user_cost, dict):
            problems.append(f"cost must be a table, not {type(user_cost).__name__}")
            user_cost = {}
        known = {f.name for f in fields(cls)} - {"cost"}
        known_cost = {f.name for f in fields(CostParams)}
        problems += [f"unknown setting {k!r}" for k in sorted(set(data) - known)]
        problems += [f"unknown setting cost.{k}" for k in sorted(set(user_cost) - known_cost)]
        if problems:
            raise ConfigError(f"{origin}: " + "; ".join(problems))
        merged.update(data)
        cost.update(user_cost)
        if "name" not in merged:
            raise ConfigError(f"{origin}: missing setting 'name'")
        try:
            return cls(cost=CostParams(**cost), **merged)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "HwConfig":
        """Load a configuration from a ``.toml`` or ``.json`` file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read hardware configuration {str(path)!r}: {exc.strerror}") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: "
                              f"{exc}") from None
        return cls.from_dict(data, origin=str(path))


BUILTIN: dict[str, HwConfig] = {
    # The paper's setting: 256x256 arrays, 8-bit weights and inputs, 8-bit ADCs shared 8 per array
    # (the paper sweeps 4..32). Array count is a capacity, large enough for every model the paper maps.
    "paper-256": HwConfig(name="paper-256"),
    # A small tile for fast RTL tests and co-simulation: holds a 2-layer tiny model entirely, even with the
    # linear baseline; 96 arrays (not a power of two) so that an out-of-range array index is encodable.
    "fpga-tiny": HwConfig(name="fpga-tiny", rows=32, cols=32, n_arrays=96, weight_bits=4, input_bits=8,
                          adc_bits=9, adcs_per_array=4, in_depth=512, out_depth=512, rows_per_cycle=8),
    # The smallest useful tile, sized to fit an iCE40 UP5K FPGA.
    "fpga-micro": HwConfig(name="fpga-micro", rows=16, cols=16, n_arrays=2, weight_bits=4, input_bits=4,
                           adc_bits=8, adcs_per_array=2, in_depth=32, out_depth=32, rows_per_cycle=4),
}


def list_builtin() -> list[str]:
    """Return the names of the built-in configurations."""
    return sorted(BUILTIN)


def load_hw(spec: "str | os.PathLike | HwConfig", **overrides: Any) -> HwConfig:
    """Return the configuration named ``spec`` (built-in name or TOML/JSON path) with ``overrides`` applied.

    Overrides whose value is ``None`` are ignored, so command-line options can be passed straight through.
    """
    if isinstance(spec, HwConfig):
        cfg = spec
    elif str(spec) in BUILTIN:
        cfg = BUILTIN[str(spec)]
    elif os.path.exists(spec) or str(spec).endswith((".toml", ".json")):
        cfg = HwConfig.from_file(spec)
    else:
        raise ConfigError(f"unknown hardware configuration {str(spec)!r} (built-in: {', '.join(list_builtin())};"
                          f" or a .toml/.json file)")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in fields(HwConfig)})
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        try:
            cfg = cfg.replace(**overrides)
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
    return cfg
