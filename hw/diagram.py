"""Draw the tile's block diagram with matplotlib: ``python -m hw diagram [--out docs/img/hw_block.png --force]``."""

from __future__ import annotations

import io
from pathlib import Path

from cimisa.fsutil import atomic_write_bytes

__all__ = ["draw"]

_BOXES = {
    # name: (x, y, w, h, label, colour)
    "dec": (0.3, 4.2, 2.3, 1.3, "CommandDecoder\nheader view + checks\n(semantics.check order)", "#dbe9f6"),
    "ctrl": (3.4, 3.6, 3.4, 2.5,
             "Controller\nFSM: WRITE_W LOAD_IN MVM\nREQUANT READ BARRIER HALT\nstatus {state, error, index}",
             "#fde9d9"),
    "xbar": (3.4, 0.3, 3.4, 2.4,
             "Crossbar\nrows_per_cycle weight banks\n(one row per word, BRAM)\ncells from weights (fmt)"
             "\nP rows summed / cycle\nphysical column sums", "#e2f0d9"),
    "adc": (7.6, 3.6, 2.6, 2.5,
            "ADC lanes x adcs_per_array\n(in Controller)\nclip(round(colsum >> shift))\n"
            "<< (digit + slice + shift), +/-\n"
            "accumulator lane RAMs", "#fff2cc"),
    "inbuf": (0.3, 0.3, 2.3, 1.4, "Input buffer\nin_depth x input_bits", "#ede7f6"),
    "outbuf": (7.6, 0.3, 2.6, 1.4, "Output buffer\nout_depth x int32", "#ede7f6"),
}

_ARROWS = [
    ((-0.6, 4.85), (0.3, 4.85), "cmd stream\n(word, last)"),
    ((2.6, 4.85), (3.4, 4.85), "decoded"),
    ((5.1, 3.6), (5.1, 2.7), "row group rd/wr,\nrow drives"),
    ((6.8, 2.2), (7.6, 4.0), "colsum"),
    ((6.8, 5.3), (7.6, 5.3), "adc_bits/shift, d, p"),
    ((3.4, 3.9), (2.6, 1.3), "gather / LOAD_IN /\nREQUANT"),
    ((6.8, 3.8), (7.6, 1.2), "write-back, READ,\nREQUANT"),
    ((8.9, 3.6), (8.9, 1.7), "acc"),
    ((5.1, 6.1), (5.1, 6.8), "status"),
    ((6.8, 5.9), (10.9, 6.6), "res stream (int32)"),
]


def draw(out: str | Path) -> Path:
    """Draw the block diagram into the PNG ``out`` (written atomically); return its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(11, 7))
    for x, y, w, h, label, colour in _BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#333333"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)
    for (x0, y0), (x1, y1), label in _ARROWS:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", lw=1.3))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, label, ha="center", va="bottom", fontsize=7.5,
                color="#1f3b70")
    ax.set_xlim(-0.8, 11.2)
    ax.set_ylim(0, 7.2)
    ax.axis("off")
    ax.set_title("CimTile (hw/tile.py): one clock domain, commands executed in order", fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
