"""The hardware configuration: one frozen dataclass, the single source of truth for every parameter.

Command field widths (:mod:`cimisa.isa`), RTL parameters (:mod:`hw`), the golden model (:mod:`sw_model`) and the
cost model (:mod:`compiler.cost`) all derive from a :class:`HwConfig`. Configurations come from built-in names
(:data:`BUILTIN`) or from TOML/JSON files, and are validated when created: every violation is listed in one
:class:`~cimisa.errors.ConfigError`.

A file holds the same keys as the dataclass; ``cost``, ``chip`` and ``tech`` are tables of :class:`CostParams`,
:class:`~cimisa.chip.ChipParams` and :class:`~cimisa.tech.TechParams` keys, and ``base`` names a built-in
configuration to start from (a partial table merges over the base's values), so a file only needs what differs::

    base = "paper-256"
    name = "paper-256-a16"
    adcs_per_array = 16
    [cost]
    adc_fom_fj_per_step = 50.0
    [chip]
    arrays_per_tile = 16

Every setting is checked for its type and range *before* anything is derived from it (:data:`LIMITS`,
:data:`COST_LIMITS`): integers must be integers (not ``32.0``, ``true`` or ``"32"``), numbers must be finite,
and the tile may hold at most :data:`MAX_CELLS` weight cells, so that no configuration that loads can make a
later command hang or run out of memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cimisa.chip import ChipParams
from cimisa.chip import finite_in as _finite_in  # one set of type/range predicates for every settings table
from cimisa.chip import is_int as _is_int
from cimisa.chip import is_number as _is_number
from cimisa.chip import show_value as _show  # one renderer of user values (mapper.sweep imports it from here)
from cimisa.errors import ConfigError
from cimisa.formats import NumberFormat, format_violations
from cimisa.rules import ACC_BITS  # the accumulator width, defined with the rules that use it
from cimisa.tech import TechParams

__all__ = ["ACC_BITS", "LIMITS", "COST_LIMITS", "MAX_CELLS", "MAX_CONFIG_BYTES", "CostParams", "HwConfig",
           "ChipParams", "TechParams", "TABLES", "FORMAT_FIELDS", "BUILTIN", "list_builtin", "load_hw"]

#: Allowed range of each integer setting of :class:`HwConfig` (inclusive). ``adcs_per_array`` is further limited
#: to ``cols``, ``rows_per_cycle`` to the divisors of ``rows`` and ``adc_bits`` to ``lossless_adc_bits`` (at most
#: 28: 16-bit weights on 4096 rows).
#: The upper bounds keep every derived quantity small: field widths (array index <= 20 bits, buffer addresses
#: <= 20 bits), payload packing (an element of at most 16 bits fits any stream word), and the buffers the golden
#: model allocates up front (``in_depth`` + ``out_depth`` int64 words, at most 16 MiB).
LIMITS: dict[str, tuple[int, int]] = {
    "rows": (2, 4096), "cols": (2, 4096), "n_arrays": (1, 1 << 20), "weight_bits": (2, 16), "input_bits": (2, 16),
    "adc_bits": (1, 28), "adcs_per_array": (1, 4096), "in_depth": (2, 1 << 20), "out_depth": (2, 1 << 20),
    "rows_per_cycle": (1, 4096), "cell_bits": (0, 16), "dac_bits": (1, 15),
}

#: Most weight cells (``n_arrays * rows * cols``) a configuration may have: 2**36, about 69 billion. That holds
#: every model in the kit's zoo with the dense (linear) baseline, up to Llama-2-7B (about 7e9 weights, which
#: ``bench/bench_mapper.py`` maps on 2**20 arrays of 256 x 256 = exactly this limit), while a tile of 4096 x 4096
#: arrays can have at most 4096 of them. Nothing in the kit allocates per configured cell up front (the golden
#: model and the mapper allocate the arrays a stream or placement uses), but the RTL's weight memory is sized by
#: the tile, and a tile beyond this bound only ends in a MemoryError minutes later.
MAX_CELLS = 1 << 36

#: Largest configuration file (or configuration block of a stream file) the loaders read, in bytes.
MAX_CONFIG_BYTES = 1 << 20

#: Upper bound of every time/energy constant of :class:`CostParams` (ns, pJ, fJ or nJ per event): larger values
#: are not physical and overflow the cost model's sums to infinity.
COST_MAX = 1e9

#: Integer cost constants and their inclusive ranges; ``adc_ramp_fraction`` is a number in 0..1; every other
#: cost constant is a finite number in ``0..COST_MAX``.
COST_LIMITS: dict[str, tuple[int, int]] = {"adc_ref_bits": (1, 28), "digital_lanes": (1, 1 << 20)}


@dataclass(frozen=True)
class CostParams:
    """Timing and energy constants of the cost model (:mod:`compiler.cost`); sources in ``docs/cost-model.md``.

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
    #: Network: energy to move one bit over one link hop between tiles (router + ~1 mm wire; ignored by the
    #: ``ideal`` topology). An assumption (docs/chip.md).
    e_link_pj_per_bit_hop: float = 0.1
    #: DRAM access energy per byte: 3D-SiM's DRAM active power over its bandwidth, 0.2467 W / 5.332 GB/s
    #: (about 5.8 pJ/bit, LPDDR4-class).
    e_dram_pj_per_byte: float = 46.27
    #: On-chip SRAM access energy per byte (a 64-bit read of an 8 KiB SRAM, 10 pJ, Horowitz ISSCC 2014).
    e_sram_pj_per_byte: float = 1.25
    #: Weight reload: time to program one row of one array (program-and-verify of every cell of the row, the
    #: row's cells in parallel). An assumption (docs/chip.md).
    t_program_row_ns: float = 1000.0

    def __post_init__(self):
        # Normalise valid values (numpy scalars, integers given for times and energies) to plain int/float, so
        # that JSON output is uniform; invalid values are left as they are for violations() to report.
        for f in fields(self):
            v = getattr(self, f.name)
            if self._problem(f.name, v) is None:
                object.__setattr__(self, f.name, int(v) if f.name in COST_LIMITS else float(v))

    @staticmethod
    def _problem(name: str, v: Any) -> str | None:
        """What is wrong with value ``v`` of constant ``name`` (None if nothing)."""
        if name in COST_LIMITS:
            lo, hi = COST_LIMITS[name]
            if not _is_int(v) or not lo <= v <= hi:
                return f"cost.{name} must be an integer in {lo}..{hi}, not {_show(v)}"
        elif name == "adc_ramp_fraction":
            if not _is_number(v) or not _finite_in(v, 0, 1):
                return f"cost.{name} must be a number in 0..1, not {_show(v)}"
        elif not _is_number(v) or not _finite_in(v, 0, COST_MAX):
            return f"cost.{name} must be a finite number in 0..1e9, not {_show(v)}"
        return None

    def violations(self) -> list[str]:
        """Return every rule these constants break (empty when valid), each naming ``cost.<key>``."""
        return [p for f in fields(self) if (p := self._problem(f.name, getattr(self, f.name))) is not None]

    @classmethod
    def preset(cls, name: str) -> CostParams:
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
    ``rows_per_cycle`` is how many rows the FPGA crossbar emulation sums per clock cycle. ``chip`` groups the
    arrays into tiles that share their periphery (``docs/chip.md``); ``tech`` holds area and static power.
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
    #: Number formats (:mod:`cimisa.formats`, ``docs/isa.md``): bits per weight cell (0: one cell holds a whole
    #: weight), how signed weights are held (``twos``, ``differential`` pairs, ``offset`` with a bias column), how
    #: inputs drive the rows (``twos`` or ``sign-magnitude``, ``dac_bits`` per cycle) and how the ADC rounds
    #: (``floor``, ``nearest``). The defaults are the kit's original formats.
    cell_bits: int = 0
    weight_encoding: str = "twos"
    input_encoding: str = "twos"
    dac_bits: int = 1
    adc_rounding: str = "floor"
    cost: CostParams = field(default_factory=CostParams)
    #: How the arrays form a chip (tiles, shared periphery, units, memory, network): :mod:`cimisa.chip`.
    chip: ChipParams = field(default_factory=ChipParams)
    #: Area and static power constants and the ADC model: :mod:`cimisa.tech`.
    tech: TechParams = field(default_factory=TechParams)

    def __post_init__(self):
        for f in fields(self):   # numpy integers (e.g. from a sweep) become plain ints
            v = getattr(self, f.name)
            if f.name in LIMITS and _is_int(v) and type(v) is not int:
                object.__setattr__(self, f.name, int(v))
        problems = self.violations()
        if problems:
            raise ConfigError(f"invalid hardware configuration {_show(self.name)}: " + "; ".join(problems))

    def violations(self) -> list[str]:
        """Return every rule this configuration breaks (empty when valid).

        Types and ranges of every setting are checked first; the rules between settings (and the quantities
        derived from them, such as :attr:`lossless_adc_bits`) only once the settings they use are valid.
        """
        out: list[str] = []
        ok: dict[str, bool] = {}
        for name, (lo, hi) in LIMITS.items():
            v = getattr(self, name)
            ok[name] = _is_int(v) and lo <= v <= hi
            if not ok[name]:
                out.append(f"{name} must be an integer in {lo}..{hi}, not {_show(v)}")
        if not isinstance(self.name, str) or not self.name or len(self.name) > 100 or not self.name.isprintable():
            out.append(f"name must be a non-empty string of at most 100 printable characters, not "
                       f"{_show(self.name)}")
        if ok["cols"] and ok["adcs_per_array"] and self.adcs_per_array > self.cols:
            out.append(f"adcs_per_array must be at most cols ({self.cols}), not {self.adcs_per_array}")
        if ok["rows"] and ok["rows_per_cycle"] and self.rows % self.rows_per_cycle:
            out.append(f"rows_per_cycle must divide rows ({self.rows}), not {self.rows_per_cycle}")
        if ok["rows"] and ok["cols"] and ok["n_arrays"] and self.total_cells > MAX_CELLS:
            out.append(f"the tile holds n_arrays*rows*cols = {self.total_cells} weight cells, more than the kit's "
                       f"limit of 2**36 = {MAX_CELLS} (about 9x a dense 7B-parameter model)")
        fmt_ok = all(ok[k] for k in ("weight_bits", "input_bits", "cell_bits", "dac_bits"))
        if fmt_ok:
            fmt_problems = format_violations(self.weight_bits, self.input_bits, self.cell_bits, self.weight_encoding,
                                             self.input_encoding, self.dac_bits, self.adc_rounding)
            out += fmt_problems
            fmt_ok = not fmt_problems
        if fmt_ok and ok["cols"] and self.logical_cols < 1:
            out.append(f"cols ({self.cols}) must hold at least one weight: {self.fmt.cols_per_weight} cells per "
                       f"weight{' and a bias column' if self.fmt.bias_cols else ''}")
        if fmt_ok and ok["rows"] and ok["adc_bits"] and self.adc_bits > self.lossless_adc_bits:
            out.append(f"adc_bits must be at most {self.lossless_adc_bits} (lossless for {self.rows} rows of "
                       f"{self.weight_bits}-bit weights{'' if self.fmt.is_default else ' in ' + self.fmt.describe()})"
                       f", not {self.adc_bits}")
        for key, cls in TABLES.items():
            sub = getattr(self, key)
            if not isinstance(sub, cls):
                out.append(f"{key} must be a {cls.__name__}, not {type(sub).__name__}")
            elif key == "chip":
                out += sub.violations(self.n_arrays if ok["n_arrays"] else None)
            else:
                out += sub.violations()
        return out

    # ---- derived quantities -------------------------------------------------------------------------------
    @functools.cached_property
    def fmt(self) -> NumberFormat:
        """The number formats (:class:`cimisa.formats.NumberFormat`): cells, drive, ADC rounding."""
        return NumberFormat.of(self)

    @property
    def logical_cols(self) -> int:
        """Weights per array row: the physical ``cols`` over the cells per weight, less the bias column
        (:meth:`cimisa.formats.NumberFormat.logical_cols`; ``cols`` in the default format)."""
        return self.fmt.logical_cols(self.cols)

    @property
    def cells_per_array(self) -> int:
        """Weight cells in one array."""
        return self.rows * self.cols

    @property
    def total_cells(self) -> int:
        """Weight cells in the whole tile (at most :data:`MAX_CELLS`)."""
        return self.n_arrays * self.rows * self.cols

    @property
    def n_tiles(self) -> int:
        """Tiles of the chip (``n_arrays // chip.arrays_per_tile``)."""
        return self.chip.tiles(self.n_arrays)

    @property
    def adcs_per_tile(self) -> int:
        """ADCs in one tile's bank, shared by its arrays: ``chip.mvms_per_tile * adcs_per_array``."""
        return self.chip.mvms_per_tile * self.adcs_per_array

    @property
    def total_adcs(self) -> int:
        """ADCs of the whole chip (``n_tiles * adcs_per_tile``; ``n_arrays * adcs_per_array`` when flat)."""
        return self.n_tiles * self.adcs_per_tile

    @property
    def lossless_adc_bits(self) -> int:
        """ADC resolution at which a full-height column sum of one input bit never saturates.

        Column sums lie in ``-2**(weight_bits-1) * rows .. (2**(weight_bits-1) - 1) * rows``, which a signed
        ``weight_bits + ceil(log2(rows))``-bit number holds (:func:`cimisa.rules.lossless_adc_bits`):

        >>> HwConfig(name="t", rows=32, cols=32, n_arrays=1, weight_bits=4, adc_bits=9, adcs_per_array=4,
        ...          rows_per_cycle=8).lossless_adc_bits
        9
        """
        return self.fmt.lossless_adc_bits(self.rows)

    def lossless(self) -> HwConfig:
        """Return this configuration with ADCs wide enough that no MVM loses information."""
        return self.replace(adc_bits=self.lossless_adc_bits, name=f"{self.name}-lossless"
                            if not self.name.endswith("-lossless") else self.name)

    def replace(self, **changes: Any) -> HwConfig:
        """Return a copy with ``changes`` applied and validated.

        ``cost``, ``chip`` and ``tech`` may be dicts of changes to this configuration's tables.
        """
        unknown = sorted(map(str, set(changes) - {f.name for f in fields(self)}))
        for key, cls in TABLES.items():
            if isinstance(changes.get(key), dict):
                known = {f.name for f in fields(cls)}
                unknown += sorted(f"{key}.{k}" for k in set(changes[key]) - known)
                if not unknown:
                    changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain JSON-compatible data."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Return canonical JSON (sorted keys, no spaces) of the configuration."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def arch_hash(self) -> str:
        """Hex SHA-256 (16 digits) of the architectural fields: everything but ``name``, ``cost``, ``chip``, ``tech``.

        Two configurations with the same hash run the same command streams with the same results. The cost
        constants, the chip organisation (tiles, shared periphery, units, memory, network) and the technology
        constants only change how long a stream takes, what it costs and how large the chip is, never what the
        stream encodes or computes, so a stream built for the flat ``paper-256`` runs on its tiled versions.
        """
        d = self.to_dict()
        for key in ("name", *TABLES):
            d.pop(key)
        for f in fields(self):      # number formats at their defaults leave the hash of older configurations
            if f.name in FORMAT_FIELDS and d[f.name] == f.default:
                d.pop(f.name)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        """Short name for files built from this configuration, e.g. ``r32c32x64_w4i8a10``."""
        tag = f"r{self.rows}c{self.cols}x{self.n_arrays}_w{self.weight_bits}i{self.input_bits}a{self.adc_bits}"
        if not self.fmt.is_default:
            f = self.fmt
            tag += (f"_c{f.bits_per_cell}{f.weight_encoding[0]}{'s' if f.input_encoding != 'twos' else 't'}"
                    f"{f.dac_bits}{f.adc_rounding[0]}")
        return tag

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "configuration") -> HwConfig:
        """Build a configuration from a dict (as read from TOML/JSON), listing every problem in one error.

        ``base`` (a string naming a built-in configuration) supplies the settings the dict leaves out; ``cost``,
        ``chip`` and ``tech`` are tables of :data:`TABLES` keys, merged key by key over the base's tables.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a table of settings, not {_show(data)}")
        data = dict(data)
        base = data.pop("base", None)
        problems: list[str] = []
        merged: dict[str, Any] = {}
        if base is not None:
            if not isinstance(base, str):
                problems.append(f"base must be a string naming a built-in configuration "
                                f"({', '.join(list_builtin())}), not {_show(base)}")
            elif base not in BUILTIN:
                problems.append(f"unknown base configuration {_show(base)} (built-in: {', '.join(list_builtin())})")
            else:
                merged = BUILTIN[base].to_dict()
        problems += [f"unknown setting {_show(k)}" for k in sorted(set(data) - {f.name for f in fields(cls)},
                                                                    key=repr)]
        tables: dict[str, dict[str, Any]] = {}
        for key, sub in TABLES.items():
            tables[key] = dict(merged.pop(key, {}))
            user = data.pop(key, {})
            if not isinstance(user, dict):
                problems.append(f"{key} must be a table, not {_show(user)}")
                continue
            known = {f.name for f in fields(sub)}
            problems += [f"unknown setting {key}.{_show(k) if not isinstance(k, str) else k[:40]}"
                         for k in sorted(set(user) - known, key=repr)]
            tables[key].update(user)
        if problems:
            raise ConfigError(f"{origin}: " + "; ".join(problems))
        merged.update(data)
        if "name" not in merged:
            raise ConfigError(f"{origin}: missing setting 'name'")
        try:
            return cls(**{k: sub(**tables[k]) for k, sub in TABLES.items()}, **merged)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> HwConfig:
        """Load a configuration from a ``.json`` file, or a TOML file (any other name).

        The file must be a regular UTF-8 file of at most :data:`MAX_CONFIG_BYTES`; JSON's ``NaN``/``Infinity``
        and TOML's ``inf``/``nan`` are read but rejected by validation like any other non-finite number.
        """
        raw = read_limited(path, MAX_CONFIG_BYTES, what="hardware configuration", error=ConfigError)
        kind = "JSON" if Path(path).suffix.lower() == ".json" else "TOML"
        try:
            text = raw.decode("utf-8")
            data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid {kind}: not UTF-8 text (byte {exc.start})") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid {kind}: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid {kind}: nested too deeply") from None
        return cls.from_dict(data, origin=str(path))


#: The number-format settings (:mod:`cimisa.formats`).
FORMAT_FIELDS = ("cell_bits", "weight_encoding", "input_encoding", "dac_bits", "adc_rounding")

#: The nested tables of a configuration: key -> settings class.
TABLES: dict[str, type] = {"cost": CostParams, "chip": ChipParams, "tech": TechParams}


def read_limited(path: str | os.PathLike, limit: int, *, what: str, error: type[Exception]) -> bytes:
    """Return the bytes of the regular file ``path``; raise ``error`` naming ``what`` if it cannot be used.

    Refuses folders, devices and pipes (``/dev/zero`` would never end) and files larger than ``limit`` bytes.
    """
    shown = os.fspath(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"cannot read {what} {shown!r}: it is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"cannot read {what} {shown!r}: not a regular file")
        if st.st_size > limit:
            raise error(f"cannot read {what} {shown!r}: {st.st_size} bytes, more than the limit of {limit}")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {shown!r}: {exc.strerror or exc}") from None
    except ValueError as exc:    # e.g. a NUL byte in the path
        raise error(f"cannot read {what} {shown!r}: {exc}") from None
    if len(raw) > limit:
        raise error(f"cannot read {what} {shown!r}: more than the limit of {limit} bytes")
    return raw


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
    # fpga-tiny's weights sliced into 1-bit cells held as differential pairs (3 + 3 cells per 4-bit weight): the
    # same 32 weights per array row in 192 physical columns, 6-bit ADCs (unsigned: lossless for 32 rows), so the
    # paper's log2(rows) rule saturates only when all 32 rows fire on 32 set cells. Tests and co-simulation.
    "fpga-tiny-sliced": HwConfig(name="fpga-tiny-sliced", rows=32, cols=192, n_arrays=96, weight_bits=4,
                                 input_bits=8, adc_bits=6, adcs_per_array=8, in_depth=512, out_depth=512,
                                 rows_per_cycle=8, cell_bits=1, weight_encoding="differential"),
    # Tiled chips (docs/chip.md says what, why and the sources). Same arrays as paper-256: 64 tiles of 128
    # stacked tiers sharing one periphery (one MVM per tile at a time), 4 digital units and 1 attention unit of 1 W
    # static power each, DRAM 5.332 GB/s at 0.2467 W active / 0.1297 W idle: IBM 3D-SiM's AcceleratorConfig.
    "chip-3dsim": HwConfig(
        name="chip-3dsim", cost=dataclasses.replace(CostParams.preset("paper"), e_link_pj_per_bit_hop=0.01),
        chip=ChipParams(arrays_per_tile=128, mvms_per_tile=1, digital_units=4, attention_units=1,
                        topology="mesh", mesh_cols=8, dram_bytes_per_ns=5.332),
        tech=TechParams(array_stack="3d", p_digital_lane_uw=1e6 / 1024, p_attention_lane_uw=1e6 / 1024,
                        p_dram_mw=129.7)),
    # paper-256's arrays as 512 tiles of 16 arrays sharing one bank of 8 ADCs, 16 x 32 mesh, 8 digital units and
    # 4 attention units: a planar chip on which every strategy of BERT-large (linear: 4608 arrays) fits.
    "chip-paper": HwConfig(name="chip-paper", chip=ChipParams(
        arrays_per_tile=16, mvms_per_tile=1, digital_units=8, attention_units=4, topology="mesh", mesh_cols=32)),
    # fpga-tiny's 96 arrays as 4 tiles of 24 on a 2 x 2 mesh, one MVM per tile: tests and the multi-tile RTL.
    "chip-tiny-4t": HwConfig(name="chip-tiny-4t", rows=32, cols=32, n_arrays=96, weight_bits=4, input_bits=8,
                             adc_bits=9, adcs_per_array=4, in_depth=512, out_depth=512, rows_per_cycle=8,
                             chip=ChipParams(arrays_per_tile=24, mvms_per_tile=1, attention_lanes=32, sram_kib=64,
                                             topology="mesh", mesh_cols=2)),
    # fpga-tiny's arrays as a chip of 2 or 4 tiles on a bus (the multi-tile RTL, hw.chip): each tile has its own
    # controller, command queue and bank of 4 ADCs (one MVM at a time); the bus carries one 32-bit word per cycle
    # (4 bytes per ns at the 1 ns digital cycle) and grants it 2 cycles after a request (hop latency).
    **{f"fpga-tiny-{t}t": HwConfig(
        name=f"fpga-tiny-{t}t", rows=32, cols=32, n_arrays=96, weight_bits=4, input_bits=8, adc_bits=9,
        adcs_per_array=4, in_depth=512, out_depth=512, rows_per_cycle=8,
        chip=ChipParams(arrays_per_tile=96 // t, mvms_per_tile=1, attention_lanes=32, sram_kib=64, topology="bus",
                        link_bytes_per_ns=4.0, hop_latency_ns=2.0, queue_depth=4)) for t in (2, 4)},
}


def list_builtin() -> list[str]:
    """Return the names of the built-in configurations."""
    return sorted(BUILTIN)


def load_hw(spec: str | os.PathLike | HwConfig, **overrides: Any) -> HwConfig:
    """Return the configuration named ``spec`` (built-in name or TOML/JSON path) with ``overrides`` applied.

    Overrides whose value is ``None`` are ignored, so command-line options can be passed straight through.
    """
    if isinstance(spec, HwConfig):
        cfg = spec
    elif not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"hardware configuration must be a name or a file, not {_show(spec)}")
    elif os.fspath(spec) in BUILTIN:
        cfg = BUILTIN[os.fspath(spec)]
    elif os.path.lexists(spec) or str(spec).endswith((".toml", ".json")):
        cfg = HwConfig.from_file(spec)
    else:
        raise ConfigError(f"unknown hardware configuration {str(spec)!r} (built-in: {', '.join(list_builtin())};"
                          f" or a .toml/.json file)")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in fields(HwConfig)})
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        cfg = cfg.replace(**overrides)
    return cfg
