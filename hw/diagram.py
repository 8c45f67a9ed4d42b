"""Block diagrams with matplotlib: ``python -m hw diagram [--hw NAME_OR_FILE] [--out F] [--force]``.

Without ``--hw``, or with a configuration that executes in order, the tile (:class:`hw.tile.CimTile`,
``docs/img/hw_block.png``); with a concurrent one (:func:`cimisa.concurrency.is_concurrent`) the chip
(:class:`hw.chip.CimChip`, ``docs/img/chip_block.png``), every number taken from the configuration.

The layout is a pure function (:func:`tile_diagram`, :func:`chip_diagram`, :func:`diagram_for`) returning a
:class:`Diagram` of boxes, arrows and their labels; :func:`render` draws it, :func:`draw` writes the PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from cimisa.concurrency import is_concurrent
from cimisa.errors import KitError
from cimisa.fsutil import atomic_write_bytes
from cimisa.timing import bus_latency, bus_words_per_cycle, rtl_chip_problems

__all__ = ["Box", "Arrow", "Diagram", "tile_diagram", "chip_diagram", "diagram_for", "render", "draw",
           "MAX_DRAWN_TILES"]

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

_TILE_TITLE = "CimTile (hw/tile.py): one clock domain, commands executed in order"

#: Most tiles drawn one by one; a larger chip shows its first two tiles, an ellipsis and its last tile.
MAX_DRAWN_TILES = 4


@dataclass(frozen=True)
class Box:
    """A labelled box; ``kind`` ``"frame"`` is a background panel grouping one tile's boxes (no label)."""

    name: str
    x: float
    y: float
    w: float
    h: float
    label: str
    colour: str
    fontsize: float = 9
    kind: str = "box"


@dataclass(frozen=True)
class Arrow:
    """An arrow from ``start`` to ``end`` (a plain line when not ``head``) and its label: above the midpoint, or
    at ``text_at`` with the alignment ``ha``/``va``; an empty label is not drawn."""

    start: tuple[float, float]
    end: tuple[float, float]
    label: str
    text_at: tuple[float, float] | None = None
    ha: str = "center"
    va: str = "bottom"
    head: bool = True


@dataclass(frozen=True)
class Diagram:
    """What a block diagram shows: boxes, arrows, title and the drawing's extent (data units, inches)."""

    title: str
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    figsize: tuple[float, float]
    arrow_fontsize: float = 7.5
    title_fontsize: float = 11

    def box(self, name: str) -> Box:
        """The box called ``name``."""
        for b in self.boxes:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def labels(self) -> dict[str, str]:
        """Every box's label by its name."""
        return {b.name: b.label for b in self.boxes}


def tile_diagram() -> Diagram:
    """The tile's block diagram (:class:`hw.tile.CimTile`): the same for every configuration."""
    return Diagram(title=_TILE_TITLE,
                   boxes=tuple(Box(name, x, y, w, h, label, colour) for name, (x, y, w, h, label, colour)
                               in _BOXES.items()),
                   arrows=tuple(Arrow(a, b, label) for a, b, label in _ARROWS),
                   xlim=(-0.8, 11.2), ylim=(0, 7.2), figsize=(11, 7))


def _num(v: float) -> str:
    return f"{v:g}"


def _plural(n: int, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"


def chip_diagram(cfg) -> Diagram:
    """The block diagram of ``cfg``'s concurrent chip (:class:`hw.chip.CimChip`), every number from ``cfg``.

    Boxes: ``dec``, ``disp``, per drawn tile ``u``: ``frame{u}``, ``queue{u}``, ``ctrl{u}``, ``xbar{u}``,
    ``adc{u}``, ``inbuf{u}``; ``more`` (the ellipsis of a chip of more than :data:`MAX_DRAWN_TILES` tiles),
    ``glob``, ``bus``, ``outbuf``. Raises :class:`~cimisa.errors.KitError` if ``cfg`` is not concurrent or the
    RTL cannot generate its chip (:func:`cimisa.timing.rtl_chip_problems`).
    """
    name = cfg.name or cfg.tag
    problems = rtl_chip_problems(cfg)
    if not is_concurrent(cfg) or problems:
        why = "; ".join(problems) or "one tile or no command queues: its diagram is the tile's (CimTile)"
        raise KitError(f"cannot draw the chip of {name!r}: {why}")
    T, apt, Dq = cfg.n_tiles, cfg.chip.arrays_per_tile, cfg.chip.queue_depth
    words, lat = bus_words_per_cycle(cfg), bus_latency(cfg)
    shown: list[int | None] = list(range(T)) if T <= MAX_DRAWN_TILES else [0, 1, None, T - 1]

    CW, G, GAP, GW = 3.2, 0.5, 1.7, 3.4          # tile column, gap between tiles, gap before global, global width
    slots_end = len(shown) * CW + (len(shown) - 1) * G
    gx = slots_end + GAP                          # the global controller's column
    right = gx + GW
    y_disp, h_disp = 11.1, 1.6
    y_q, h_q = 9.5, 0.8
    y_c, h_c = 7.6, 1.3
    y_x, h_x = 5.4, 1.6
    y_i, h_i = 3.8, 1.0
    y_rail = 3.3
    y_bus, h_bus = 1.3, 0.8
    xw, aw = 1.5, 1.45                            # crossbar and ADC bank widths (side by side)

    boxes = [
        Box("dec", 0.0, y_disp, 2.6, h_disp, "CommandDecoder\nheader checks\n(semantics.check order)", "#dbe9f6"),
        Box("disp", 3.7, y_disp, right - 3.7, h_disp,
            f"Dispatcher: one decoded element per cycle, in order; status register\n"
            f"hull + lattice registers of each of the {T} tiles: HAZARD when an MVM's\n"
            f"outputs meet another tile's; BARRIER scopes: local (its tile), global (every tile)",
            "#fde9d9", fontsize=8.5),
    ]
    arrows = [
        Arrow((-1.3, y_disp + h_disp / 2), (0.0, y_disp + h_disp / 2), "cmd stream\n(word, last)"),
        Arrow((2.6, y_disp + h_disp / 2), (3.7, y_disp + h_disp / 2), "decoded\nelements"),
        Arrow((3.7 + 1.2, y_disp + h_disp), (3.7 + 1.2, y_disp + h_disp + 0.6), "status {state, error, index}",
              text_at=(3.7 + 1.3, y_disp + h_disp + 0.25), ha="left", va="center"),
    ]
    for k, u in enumerate(shown):
        x0 = k * (CW + G)
        cx = x0 + CW / 2
        push_x = max(cx, 3.7 + 0.3)
        arrows.append(Arrow((push_x, y_disp), (cx, y_q + h_q), ""))
        wb_x = x0 + CW - aw / 2
        if u is None:
            first, last = shown[1] + 1, shown[-1] - 1
            boxes.append(Box("more", x0, y_i, CW, y_q + h_q - y_i,
                             f"...\ntiles {first} .. {last}\n({_plural(last - first + 1, 'more tile')}\n"
                             f"like tile 0,\n{_plural(apt, 'array')} each)\n\n{T} tiles in all",
                             "#f2f2f2", fontsize=8.5))
            arrows.append(Arrow((wb_x, y_i), (wb_x, y_bus + h_bus), ""))
            arrows.append(Arrow((x0 + xw / 2, y_rail), (x0 + xw / 2, y_i), ""))
            continue
        lo, hi = u * apt, (u + 1) * apt - 1
        boxes += [
            Box(f"frame{u}", x0 - 0.12, y_i - 0.12, CW + 0.24, y_q + h_q - y_i + 0.24, "", "#f7f7f7",
                kind="frame"),
            Box(f"queue{u}", x0, y_q, CW, h_q, f"queue {u}: depth {Dq}\n(decoded MVM, WRITE_W)", "#dbe9f6",
                fontsize=8),
            Box(f"ctrl{u}", x0, y_c, CW, h_c,
                f"tile controller {u}\narrays {lo} .. {hi} ({apt})\nbus request on write-back", "#fde9d9",
                fontsize=8),
            Box(f"xbar{u}", x0, y_x, xw, h_x,
                f"crossbar\n{_plural(apt, 'array')}\n{cfg.rows} x {cfg.cols} each\n"
                f"{cfg.rows_per_cycle} rows / cycle", "#e2f0d9", fontsize=8),
            Box(f"adc{u}", x0 + CW - aw, y_x, aw, h_x,
                f"ADC bank\n{_plural(cfg.adcs_per_tile, 'ADC')}, {cfg.adc_bits}-bit\n"
                f"({cfg.adcs_per_array} per array;\none MVM\nat a time)", "#fff2cc", fontsize=8),
            Box(f"inbuf{u}", x0, y_i, xw, h_i, f"input replica\n{cfg.in_depth} x {cfg.input_bits}-bit",
                "#ede7f6", fontsize=8),
        ]
        arrows += [
            Arrow((cx, y_q), (cx, y_c + h_c), ""),                                          # pop
            Arrow((x0 + xw / 2, y_c), (x0 + xw / 2, y_x + h_x), ""),                        # row drives
            Arrow((x0 + xw, y_x + h_x / 2), (x0 + CW - aw, y_x + h_x / 2), ""),             # column sums
            Arrow((wb_x, y_x + h_x), (wb_x, y_c), ""),                                      # accumulate
            Arrow((x0 + xw / 2, y_i + h_i), (x0 + xw / 2, y_x), ""),                        # gather
            Arrow((x0 + xw / 2, y_rail), (x0 + xw / 2, y_i), ""),                           # LOAD_IN
            Arrow((wb_x, y_x), (wb_x, y_bus + h_bus), "write-back", text_at=(wb_x + 0.08, y_bus + h_bus + 0.35),
                  ha="left", va="center"),
        ]
    # the LOAD_IN / REQUANT broadcast rail from the global controller to every input replica
    arrows.append(Arrow((gx, y_rail), (xw / 2, y_rail), "LOAD_IN /\nREQUANT\nbroadcast",
                       text_at=(slots_end + GAP / 2, y_rail + 0.15), va="bottom", head=False))
    boxes += [
        Box("glob", gx, 3.0, GW, 5.0,
            "global controller\n(runs when every\ntile is idle)\n\nLOAD_IN: inputs to\nevery input replica\n"
            "REQUANT: acc -> inputs\nREAD: acc -> res stream", "#fde9d9", fontsize=8.5),
        Box("bus", -0.1, y_bus, gx + 0.1, h_bus,
            f"bus: {_num(words)} word{'' if words == 1 else 's'} / cycle, grant {_plural(lat, 'cycle')} "
            f"after a request;\n"
            f"arbiter: the lowest requesting tile wins", "#e2f0d9", fontsize=8.5),
        Box("outbuf", gx, 0.9, GW, 1.6, f"output buffer\n{cfg.out_depth} x int32", "#ede7f6", fontsize=8.5),
    ]
    arrows += [
        Arrow((gx + GW / 2, y_disp), (gx + GW / 2, 8.0), "LOAD_IN, REQUANT,\nREAD (chip elements)",
              text_at=(gx + GW / 2 + 0.1, (y_disp + 8.0) / 2), ha="left", va="center"),
        Arrow((gx + GW / 2, 2.5), (gx + GW / 2, 3.0), "READ / REQUANT", text_at=(gx + GW / 2 + 0.1, 2.75),
              ha="left", va="center"),
        Arrow((right, 5.5), (right + 1.4, 5.5), "res stream\n(int32)"),
    ]
    title = (f"CimChip (hw/chip.py) of {name}: {_plural(T, 'tile')} of {_plural(apt, 'array')}, "
             f"command queues of depth {Dq}\nMVM and WRITE_W go to their tile's queue; "
             f"LOAD_IN, REQUANT, READ and HALT wait for every tile")
    xlim, ylim = (-1.5, right + 1.6), (0.6, 13.6)
    return Diagram(title=title, boxes=tuple(boxes), arrows=tuple(arrows), xlim=xlim, ylim=ylim,
                   figsize=(0.8 * (xlim[1] - xlim[0]), 0.75 * (ylim[1] - ylim[0])), title_fontsize=12)


def diagram_for(cfg=None) -> Diagram:
    """The diagram ``python -m hw diagram`` draws for ``cfg``: the chip's for a concurrent configuration, else
    (``None`` or a chip executing in order) the tile's."""
    if cfg is not None and is_concurrent(cfg):
        return chip_diagram(cfg)
    return tile_diagram()


def render(d: Diagram):
    """Draw ``d`` into a new matplotlib figure (Agg) and return it; the caller closes it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=d.figsize)
    for b in d.boxes:
        if b.kind == "frame":
            ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0.05", fc=b.colour,
                                        ec="#999999", ls="--", lw=0.8, zorder=0.5))
            continue
        ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0.05", fc=b.colour, ec="#333333"))
        ax.text(b.x + b.w / 2, b.y + b.h / 2, b.label, ha="center", va="center", fontsize=b.fontsize)
    for a in d.arrows:
        (x0, y0), (x1, y1) = a.start, a.end
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->" if a.head else "-", lw=1.3))
        if not a.label:
            continue
        tx, ty = a.text_at if a.text_at is not None else ((x0 + x1) / 2, (y0 + y1) / 2 + 0.12)
        ax.text(tx, ty, a.label, ha=a.ha, va=a.va, fontsize=d.arrow_fontsize, color="#1f3b70")
    ax.set_xlim(*d.xlim)
    ax.set_ylim(*d.ylim)
    ax.axis("off")
    ax.set_title(d.title, fontsize=d.title_fontsize)
    return fig


def draw(out: str | Path, cfg=None) -> Path:
    """Draw :func:`diagram_for` ``cfg`` into the PNG ``out`` (written atomically); return its path."""
    fig = render(diagram_for(cfg))
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
