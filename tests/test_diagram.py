"""``python -m hw diagram``: the tile's block diagram (unchanged) and the concurrent chip's (``--hw``), every number
of the chip's from its configuration, text that does not overlap, bad input refused."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

import hw.diagram
from cimisa.config import load_hw
from cimisa.timing import bus_latency, bus_words_per_cycle
from hw.diagram import MAX_DRAWN_TILES, chip_diagram, diagram_for, draw, render, tile_diagram

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHIP4 = load_hw("fpga-tiny-4t")
CHIP2 = load_hw("fpga-tiny-2t")
CHIP3 = CHIP4.replace(name="fpga-tiny-3t", chip={"arrays_per_tile": 32})
CHIP16 = CHIP4.replace(name="fpga-tiny-16t", chip={"arrays_per_tile": 6})
#: Every number the chip's diagram shows differs from fpga-tiny-4t's (and from each other where it can).
ODD = CHIP4.replace(name="odd-chip", rows=16, cols=48, n_arrays=48, input_bits=6, adc_bits=7, adcs_per_array=2,
                    in_depth=256, out_depth=128, rows_per_cycle=2,
                    chip={"arrays_per_tile": 16, "queue_depth": 3, "hop_latency_ns": 5.0})


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hw", "diagram", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---- the tile: unchanged ---------------------------------------------------------------------------------------

def test_tile_diagram_without_hw_is_byte_identical_to_the_committed_one(tmp_path):
    """A fresh interpreter (matplotlib's defaults) draws exactly docs/img/hw_block.png."""
    r = _cli("--out", "d.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d.png").read_bytes() == (ROOT / "docs" / "img" / "hw_block.png").read_bytes()


def test_a_sequential_configuration_draws_the_tile():
    tile = tile_diagram()
    assert diagram_for(None) == tile
    for name in ("fpga-tiny", "fpga-micro", "chip-tiny-4t"):          # one tile, or tiles without command queues
        assert diagram_for(load_hw(name)) == tile
    assert diagram_for(CHIP4.replace(chip={"queue_depth": 0})) == tile
    assert tile.title.startswith("CimTile (hw/tile.py)")
    assert list(tile.labels) == ["dec", "ctrl", "xbar", "adc", "inbuf", "outbuf"]
    assert tile.labels["inbuf"] == "Input buffer\nin_depth x input_bits"


# ---- the chip: labels from the configuration ------------------------------------------------------------------

def test_chip_labels_of_fpga_tiny_4t():
    d = chip_diagram(CHIP4)
    lab = d.labels
    assert "fpga-tiny-4t" in d.title and "4 tiles of 24 arrays" in d.title and "depth 4" in d.title
    assert "MVM and WRITE_W go to their tile's queue" in d.title
    assert "LOAD_IN, REQUANT, READ and HALT wait for every tile" in d.title
    for u in range(4):
        assert lab[f"queue{u}"].startswith(f"queue {u}: depth 4")
        assert f"arrays {u * 24} .. {u * 24 + 23} (24)" in lab[f"ctrl{u}"]
        assert "24 arrays\n32 x 32 each\n8 rows / cycle" in lab[f"xbar{u}"]
        assert "4 ADCs, 9-bit" in lab[f"adc{u}"] and "4 per array" in lab[f"adc{u}"]
        assert lab[f"inbuf{u}"] == "input replica\n512 x 8-bit"
    assert "arrays 24 .. 47 (24)" in lab["ctrl1"] and lab["queue1"].startswith("queue 1: depth 4")
    assert "queue4" not in lab and "more" not in lab
    assert {"dec", "disp", "glob", "bus", "outbuf"} <= set(lab)
    assert "CommandDecoder" in lab["dec"]
    assert "HAZARD" in lab["disp"] and "hull + lattice" in lab["disp"] and "BARRIER" in lab["disp"]
    assert "status register" in lab["disp"] and "each of the 4 tiles" in lab["disp"]
    assert "1 word / cycle, grant 2 cycles after a request" in lab["bus"] and "lowest" in lab["bus"]
    assert (bus_words_per_cycle(CHIP4), bus_latency(CHIP4)) == (1.0, 2)
    assert lab["outbuf"] == "output buffer\n512 x int32"
    for op in ("LOAD_IN", "REQUANT", "READ"):
        assert op in lab["glob"]
    arrows = " ".join(a.label for a in d.arrows)
    for needle in ("cmd stream", "decoded", "status", "write-back", "broadcast", "READ / REQUANT", "res stream"):
        assert needle in arrows


def test_changing_queue_depth_changes_the_labels():
    d = chip_diagram(CHIP4.replace(chip={"queue_depth": 7}))
    assert all(d.labels[f"queue{u}"].startswith(f"queue {u}: depth 7") for u in range(4))
    assert "depth 7" in d.title and "depth 4" not in d.title + "".join(d.labels.values())


def test_every_number_comes_from_the_configuration():
    """A chip whose every figure differs from fpga-tiny-4t's: none of fpga-tiny-4t's figures is left."""
    assert ODD.n_tiles == 3 and bus_latency(ODD) == 5
    d = chip_diagram(ODD)
    lab = d.labels
    assert "odd-chip: 3 tiles of 16 arrays, command queues of depth 3" in d.title
    for u in range(3):
        assert lab[f"queue{u}"].startswith(f"queue {u}: depth 3")
        assert f"arrays {16 * u} .. {16 * u + 15} (16)" in lab[f"ctrl{u}"]
        assert "16 arrays\n16 x 48 each\n2 rows / cycle" in lab[f"xbar{u}"]
        assert "2 ADCs, 7-bit" in lab[f"adc{u}"] and "(2 per array" in lab[f"adc{u}"]
        assert lab[f"inbuf{u}"] == "input replica\n256 x 6-bit"
    assert "each of the 3 tiles" in lab["disp"]
    assert "grant 5 cycles after a request" in lab["bus"]
    assert lab["outbuf"] == "output buffer\n128 x int32"
    text = d.title + "\n".join(lab.values())
    for old in ("depth 4", "24 arrays", "32 x 32", "8 rows", "4 ADCs", "9-bit", "512", "8-bit", "2 cycles"):
        assert old not in text, old


def test_the_bus_width_comes_from_cimisa_timing(monkeypatch):
    """The RTL builds only one word per cycle, so a wider bus is faked: the label follows the formula."""
    monkeypatch.setattr(hw.diagram, "bus_words_per_cycle", lambda cfg: 2.0)
    assert "2 words / cycle" in chip_diagram(CHIP4).labels["bus"]


def test_more_than_four_tiles_show_the_first_two_an_ellipsis_and_the_last():
    for cfg, last in ((CHIP16, 15), (CHIP4.replace(name="fpga-tiny-8t", chip={"arrays_per_tile": 12}), 7)):
        lab = chip_diagram(cfg).labels
        apt = cfg.chip.arrays_per_tile
        assert [u for u in range(cfg.n_tiles) if f"queue{u}" in lab] == [0, 1, last]
        assert f"arrays {last * apt} .. {cfg.n_arrays - 1} ({apt})" in lab[f"ctrl{last}"]
        assert f"tiles 2 .. {last - 1}" in lab["more"] and f"({last - 2} more tiles" in lab["more"]
        assert f"{cfg.n_tiles} tiles in all" in lab["more"]
    assert MAX_DRAWN_TILES == 4 and "more" not in chip_diagram(CHIP4).labels


def test_a_chip_the_rtl_cannot_generate_is_refused():
    from cimisa.errors import KitError
    with pytest.raises(KitError, match="topology must be bus"):
        chip_diagram(CHIP4.replace(chip={"topology": "mesh"}))
    with pytest.raises(KitError, match="diagram is the tile's"):
        chip_diagram(load_hw("fpga-tiny"))


# ---- the chip: drawn and readable ------------------------------------------------------------------------------

def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("cfg", [CHIP2, CHIP3, CHIP4, CHIP16], ids=lambda c: c.name)
def test_chip_text_does_not_overlap(cfg):
    """No two texts overlap; every box's label lies inside its box; no arrow label overlaps a box; no arrow
    crosses a text."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch
    d = chip_diagram(cfg)
    with plt.style.context("default"):                                     # matplotlib's defaults, as the CLI's
        fig = render(d)
    try:
        ax = fig.axes[0]
        r = fig.canvas.get_renderer()
        drawn = [t for t in ax.texts if t.get_text()]                   # not the arrows (empty annotations)
        texts = [t.get_window_extent(r) for t in drawn]
        patches = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
        assert len(patches) == len(d.boxes)
        labelled = [b for b in d.boxes if b.kind == "box"]
        assert labelled == [b for b in d.boxes if b.label]
        boxes = [p.get_window_extent(r) for b, p in zip(d.boxes, patches) if b.kind == "box"]
        for i, j in combinations(range(len(texts)), 2):
            assert not _overlaps(texts[i], texts[j]), (drawn[i].get_text(), drawn[j].get_text())
        for k, (b, be) in enumerate(zip(labelled, boxes)):
            t = texts[k]
            assert drawn[k].get_text() == b.label
            assert be.x0 < t.x0 and t.x1 < be.x1 and be.y0 < t.y0 and t.y1 < be.y1, b.name
        for k in range(len(labelled), len(texts)):                        # arrow labels
            for b, be in zip(labelled, boxes):
                assert not _overlaps(texts[k], be), (drawn[k].get_text(), b.name)
        for a in d.arrows:                                                  # no line crosses a text
            for f in np.linspace(0, 1, 41):
                px, py = ax.transData.transform((a.start[0] + f * (a.end[0] - a.start[0]),
                                                 a.start[1] + f * (a.end[1] - a.start[1])))
                for t, te in zip(drawn, texts):
                    assert not (te.x0 + 1 < px < te.x1 - 1 and te.y0 + 1 < py < te.y1 - 1), (a, t.get_text())
    finally:
        plt.close(fig)


def test_chip_png_is_written_and_grows_with_the_tiles(tmp_path):
    sizes = {}
    for cfg in (CHIP2, CHIP4, CHIP16):
        out = draw(tmp_path / f"{cfg.name}.png", cfg)
        data = out.read_bytes()
        sizes[cfg.name] = (len(data), _png_size(data))
    assert sizes["fpga-tiny-2t"][0] != sizes["fpga-tiny-4t"][0]
    assert sizes["fpga-tiny-2t"][1][0] < sizes["fpga-tiny-4t"][1][0]           # wider: two more tile columns
    assert sizes["fpga-tiny-16t"][1] == sizes["fpga-tiny-4t"][1]               # four columns, one an ellipsis
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fpga-tiny-16t.png", "fpga-tiny-2t.png",
                                                           "fpga-tiny-4t.png"]


def test_cli_draws_the_chip(tmp_path):
    r = _cli("--hw", "fpga-tiny-4t", "--out", "c.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "c.png"
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


# ---- bad input ---------------------------------------------------------------------------------------------

BAD = {
    "unknown-hw": (["--hw", "no-such-hw"], "unknown hardware configuration"),
    "invalid-hw-file": (["--hw", "bad.toml"], "rows"),
    "missing-hw-file": (["--hw", "missing.toml"], "missing.toml"),
    "hw-no-value": (["--hw"], "--hw: expected one argument"),
    "chip-the-rtl-cannot-build": (["--hw", "mesh.toml"], "topology must be bus"),
    "existing-out": (["--hw", "fpga-tiny-2t", "--out", "existing.png"], "--force"),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("args,needle", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, args, needle):
    (tmp_path / "bad.toml").write_text('base = "fpga-tiny-4t"\nrows = -4\n')
    (tmp_path / "mesh.toml").write_text('base = "fpga-tiny-4t"\nname = "mesh"\n[chip]\ntopology = "mesh"\n')
    (tmp_path / "existing.png").write_text("not really a png\n")
    before = _snapshot(tmp_path)
    r = _cli(*args, cwd=tmp_path)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert _snapshot(tmp_path) == before                     # no hw_block.png, nothing replaced
