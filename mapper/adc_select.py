"""The accuracy ADC rule: per MVM the fewest ADC bits that keep a stream's error under a bound.

``mapper build --adc-mode accuracy --max-error E`` and ``mapper run --adc-rule accuracy --max-error E`` use it.
The error of a stream is the mean over its matmuls of the relative L2 error of the matmul outputs against the
float product of the same integer factors (:func:`compiler.quant.float_product`, as :mod:`mapper.stream_check`
measures it), over a batch of calibration input vectors.

The rule (:func:`select`):

1. one pass of the programs on the golden model with lossless ADCs; before each MVM its column sums on the
   calibration inputs give the observed range of every physical column kind (``{unsigned: (lo, hi)}`` of the
   format's sums, :meth:`cimisa.formats.NumberFormat.window_bounds` on the data instead of the weights), and for
   every resolution ``b`` from the configuration's ``adc_bits`` (at most lossless for the window's rows) down to 1,
   with the smallest step that fits that range (:meth:`~cimisa.formats.NumberFormat.adc_shift_for`), the
   MVM's own error: the relative L2 error of its contribution to the outputs against the lossless one;
2. with a per-MVM bound ``e`` (first ``E``) every MVM takes the smallest ``b`` whose own error is at most ``e``;
   the whole stream runs with those settings (verification) and, while its error exceeds ``E``, ``e`` is halved.
   It always ends: at ``e = 0`` every MVM converts its calibration sums exactly (the lossless stream's error, the
   smallest there is); if even that exceeds ``E`` the choice says ``met = False``.

The choice is per MVM command of each program; :func:`apply` writes it into the commands,
:func:`schedule_with` into the schedule's activations (so the cost model and the simulator price it), and
:func:`select_for_build` does both for a compiled model and reports the error on held-out inputs (other seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cimisa import rules
from cimisa.isa import Command, Opcode

__all__ = ["CALIB_SEEDS", "HELDOUT_SEEDS", "Prog", "AdcChoice", "observed_bounds", "observe", "mvm_errors", "select",
           "apply", "stream_error",
           "schedule_with", "AdcSelection", "select_for_build", "check_max_error"]

#: Seeds of the calibration input vectors of ``mapper build --adc-mode accuracy`` (one vector per seed and matmul,
#: :func:`compiler.stream_inputs.stream_inputs`), and of the held-out vectors its report is measured on.
CALIB_SEEDS = tuple(range(1000, 1016))
HELDOUT_SEEDS = tuple(range(2000, 2016))
#: Halvings of the per-MVM bound before it is set to 0 (after which the loop ends in one more round).
_MAX_HALVINGS = 40


def check_max_error(adc_mode, max_error, accuracy) -> None:
    """Raise :class:`cimisa.errors.ConfigError` unless ``max_error`` is given exactly when ``adc_mode`` is
    ``accuracy`` (and then a finite number >= 0)."""
    from cimisa.errors import ConfigError  # noqa: PLC0415
    if str(adc_mode) == str(accuracy):
        if max_error is None:
            raise ConfigError(f"the {accuracy} ADC rule needs --max-error E (a relative L2 error bound, e.g. 0.01)")
        if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not 0 <= max_error < 1e9:
            raise ConfigError(f"--max-error must be a number >= 0, not {max_error!r}")
    elif max_error is not None:
        raise ConfigError(f"--max-error applies to the {accuracy} ADC rule only, not to {adc_mode}")


@dataclass(frozen=True)
class Prog:
    """One matmul's program as the rule runs it: input and output addresses and its commands."""

    name: str
    in_addr: int
    in_len: int
    out_addr: int
    out_len: int
    commands: tuple[Command, ...]

    @classmethod
    def of(cls, p, commands=None) -> Prog:
        """From a :class:`compiler.program.MatmulProgram` (``commands``: others than its own)."""
        return cls(p.name, p.in_addr, p.in_len, p.out_addr, p.out_len, tuple(p.commands if commands is None
                                                                            else commands))


@dataclass(frozen=True)
class AdcChoice:
    """The rule's outcome: ``settings[name]`` the ``(adc_bits, adc_shift)`` of each MVM of program ``name``."""

    settings: dict[str, tuple[tuple[int, int], ...]]
    lossless_bits: dict[str, tuple[int, ...]]
    max_error: float
    mvm_error: float
    calib_error: float
    lossless_error: float
    met: bool
    rounds: int

    def bits(self) -> list[int]:
        return [b for s in self.settings.values() for b, _ in s]

    def histogram(self) -> dict[str, int]:
        """``{adc_bits: MVMs}``."""
        h: dict[int, int] = {}
        for b in self.bits():
            h[b] = h.get(b, 0) + 1
        return {str(k): v for k, v in sorted(h.items())}

    def to_dict(self) -> dict:
        return {"max_error": self.max_error, "met_on_calibration": self.met, "calib_error": round(self.calib_error, 6),
                "lossless_error": round(self.lossless_error, 6), "mvm_error": self.mvm_error, "rounds": self.rounds,
                "mvms": len(self.bits()), "adc_bits_sum": sum(self.bits()),
                "lossless_adc_bits_sum": sum(b for v in self.lossless_bits.values() for b in v),
                "adc_bits_histogram": self.histogram()}


def _run(machine, progs, inputs: dict[str, np.ndarray], on_mvm=None) -> dict[str, np.ndarray]:
    """Run ``progs`` in order on one batch of vectors (``inputs[name]`` ``(B, n)``); return ``{name: (B, out)}``.

    Programs run on one batch as long as their batch sizes agree. ``on_mvm(name, k, cmd)`` (optional) is
    called for the ``k``-th MVM of each program and returns the command to execute, or None when it executed
    the MVM itself.
    """
    outs, batch = {}, None
    for p in progs:
        x = np.asarray(inputs[p.name], dtype=np.int64)
        if x.shape[0] != batch:          # a new batch size starts zeroed buffers (programs that share buffers,
            batch = x.shape[0]           # depends_on, always get the same vectors)
            machine.set_batch(batch)
        st = machine.state
        n = min(x.shape[1], p.in_len)
        st.inbuf[p.in_addr:p.in_addr + p.in_len] = 0
        st.inbuf[p.in_addr:p.in_addr + n] = x[:, :n].T
        machine.sync.step(Opcode.LOAD_IN, {"addr": p.in_addr, "count": p.in_len})   # as the LOAD_INs would
        k = 0
        for c in p.commands:
            if c.op is Opcode.MVM:
                c = c if on_mvm is None else on_mvm(p.name, k, c)
                k += 1
                if c is None:
                    continue
            machine.execute(c)
        outs[p.name] = st.outbuf[p.out_addr:p.out_addr + p.out_len].T.copy()
    return outs


def _index(addr: int, stride: int, n: int) -> np.ndarray:
    return addr + stride * np.arange(n)


def observed_bounds(fmt, w: np.ndarray, x: np.ndarray) -> dict[bool, tuple[int, int]]:
    """The range of every kind of physical column sum (unsigned True / signed False) of the window ``w``
    (nrows, ncols) driven by the inputs ``x`` (nrows, B): :meth:`NumberFormat.window_bounds` on data."""
    drv = fmt.drive(np.asarray(x, dtype=np.int64))                    # (nrows, B, D)
    cells = fmt.cells(np.asarray(w, dtype=np.int64))                  # (nrows, ncols, P)
    nr, b, d = drv.shape
    s = np.tensordot(drv.reshape(nr, b * d).astype(np.float64), cells.reshape(nr, -1).astype(np.float64),
                     axes=(0, 0)).reshape(b, d, cells.shape[1], cells.shape[2])
    lo, hi = s.min(axis=(0, 2)), s.max(axis=(0, 2))                   # (D, P)
    out: dict[bool, tuple[int, int]] = {}

    def add(kind, a, z):
        olo, ohi = out.get(kind, (a, z))
        out[kind] = (min(olo, a), max(ohi, z))

    for p in range(cells.shape[2]):
        for di in range(d):
            add(fmt.unsigned_sum(p, di), int(lo[di, p]), int(hi[di, p]))
    if fmt.bias_cols:
        sb = fmt.bias_cell * drv.sum(axis=0)                          # (B, D)
        for di in range(d):
            add(fmt.unsigned_sum(-1, di), int(sb[:, di].min()), int(sb[:, di].max()))
    return out


def _window(st, a) -> tuple[np.ndarray, np.ndarray]:
    """The weights (nrows, ncols) and inputs (nrows, B) of the MVM with arguments ``a``."""
    w = st.window(a["array"], a["row0"], a["nrows"], a["col0"], a["ncols"]).w
    return w, st.inbuf[_index(a["in_addr"], a["in_stride"], a["nrows"])]


def observe(machine, progs, inputs: dict[str, np.ndarray]) -> dict[str, dict[int, dict]]:
    """Run ``progs`` with lossless ADCs (outside the command checks: a calibration pass) and return, per program
    and MVM index, the observed range of its column sums (:func:`observed_bounds`)."""
    st, fmt = machine.state, machine.cfg.fmt
    mvm = machine.actions[Opcode.MVM]
    out: dict[str, dict[int, dict]] = {p.name: {} for p in progs}

    def probe(name, k, c):
        out[name][k] = observed_bounds(fmt, *_window(st, c.args))
        mvm(st, **dict(c.args, adc_bits=fmt.lossless_adc_bits(c.args["nrows"]), adc_shift=0))
        return None

    _run(machine, progs, inputs, probe)
    return out


def mvm_errors(machine, progs, inputs: dict[str, np.ndarray]):
    """Step 1 of the rule (module docstring): ``({name: [[(bits, shift, own error), ...] per MVM]},
    lossless outputs)``, the candidates of each MVM from the most bits down."""
    cfg, st = machine.cfg, machine.state
    fmt = cfg.fmt
    mvm = machine.actions[Opcode.MVM]
    max_shift = rules.field_max(cfg.lossless_adc_bits)
    table: dict[str, list] = {p.name: [] for p in progs}

    def probe(name, k, c):
        a = c.args
        dst = _index(a["out_addr"], a["out_stride"], a["ncols"])
        before = st.outbuf[dst].copy()
        bounds = observed_bounds(fmt, *_window(st, a))
        full = fmt.lossless_adc_bits(a["nrows"])

        def contribution(bits, shift):
            st.outbuf[dst] = before
            mvm(st, **dict(a, adc_bits=bits, adc_shift=shift))
            return st.outbuf[dst].astype(np.float64) - (before if a["accumulate"] else 0)

        rows = []
        for bits in range(min(cfg.adc_bits, full), 0, -1):
            shift = fmt.adc_shift_for(bounds, bits, max_shift)
            rows.append((bits, shift, contribution(bits, shift)))
        ref = contribution(full, 0)                                   # leaves the lossless result in place
        den = float(np.linalg.norm(ref)) or 1.0
        table[name].append([(bits, shift, float(np.linalg.norm(y - ref)) / den) for bits, shift, y in rows])
        return None

    outs = _run(machine, progs, inputs, probe)
    return table, outs


def stream_error(outs: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> float:
    """Mean over matmuls of the relative L2 error of ``outs[name]`` (B, out) against ``refs[name]``."""
    errs = []
    for name, y in outs.items():
        ref = np.asarray(refs[name], dtype=np.float64)
        den = float(np.linalg.norm(ref)) or 1.0
        errs.append(float(np.linalg.norm(np.asarray(y, dtype=np.float64) - ref)) / den)
    return float(np.mean(errs)) if errs else 0.0


def apply(progs, settings: dict[str, tuple[tuple[int, int], ...]]) -> list[Prog]:
    """Return ``progs`` with the ``k``-th MVM of program ``name`` at ``settings[name][k]``."""
    out = []
    for p in progs:
        s = iter(settings[p.name])
        cmds = tuple(_set(c, next(s)) if c.op is Opcode.MVM else c for c in p.commands)
        out.append(replace(p, commands=cmds))
    return out


def _set(c: Command, setting: tuple[int, int]) -> Command:
    return Command(Opcode.MVM, dict(c.args, adc_bits=int(setting[0]), adc_shift=int(setting[1])))


def _pick(table, e: float) -> dict[str, tuple[tuple[int, int], ...]]:
    """Per MVM the candidate with the fewest bits whose own error is at most ``e`` (else the most bits)."""
    out = {}
    for name, mvms in table.items():
        picks = []
        for cands in mvms:
            ok = [(b, s) for b, s, err in cands if err <= e]
            picks.append(min(ok) if ok else cands[0][:2])
        out[name] = tuple(picks)
    return out


def select(machine, progs, inputs: dict[str, np.ndarray], refs: dict[str, np.ndarray],
           max_error: float) -> AdcChoice:
    """The accuracy rule (module docstring) on ``machine`` (weights programmed) for ``progs`` in run order,
    calibration inputs ``inputs[name]`` (B, n) and float references ``refs[name]`` (B, out)."""
    progs = list(progs)
    table, lossless_outs = mvm_errors(machine, progs, inputs)
    lossless_error = stream_error(lossless_outs, refs)
    e, rounds, tried = float(max_error), 0, {}
    while True:
        rounds += 1
        settings = _pick(table, e)
        key = tuple(settings.values())
        if key not in tried:                  # a tighter bound that picks the same settings needs no new run
            tried[key] = stream_error(_run(machine, apply(progs, settings), inputs), refs)
        err = tried[key]
        if err <= max_error or e == 0.0:
            break
        e = e / 2 if rounds < _MAX_HALVINGS else 0.0
    full = {n: tuple(c[0][0] for c in mvms) for n, mvms in table.items()}
    return AdcChoice(settings=settings, lossless_bits=full, max_error=float(max_error), mvm_error=e,
                     calib_error=err, lossless_error=lossless_error, met=err <= max_error, rounds=rounds)


# ---- mapper build: a compiled model's stream ---------------------------------------------------------------------
def schedule_with(compiled, settings: dict[str, tuple[tuple[int, int], ...]]):
    """Return the compiled model's schedule with each activation at the setting of its MVM command.

    An activation's MVM is found in the programs in order (``compiler.program.build_programs``: each matmul's
    stages' activations in order); the match is checked on the command's window.
    """
    sched = compiled.schedule
    acts = list(sched.activations)
    keys = {}
    for name, p in compiled.programs.items():
        mvms = [c for c in p.commands if c.op is Opcode.MVM]
        keys[name] = mvms
    by_window: dict[tuple, list[int]] = {}
    phys = getattr(compiled, "physical", None)       # a concurrent chip's stream names physical arrays
    for ai, a in enumerate(acts):
        arr = a.array if phys is None else phys[a.array]
        by_window.setdefault((arr, a.row0, a.nrows, a.col0, a.ncols), []).append(ai)
    used: dict[tuple, int] = {}
    for name, mvms in keys.items():
        if name not in settings:
            continue                          # not chosen (a matmul without calibration inputs): as scheduled
        for c, setting in zip(mvms, settings[name], strict=True):
            a = c.args
            key = (a["array"], a["row0"], a["nrows"], a["col0"], a["ncols"])
            idx = by_window.get(key, [])
            j = used.get(key, 0)
            if j >= len(idx):
                raise RuntimeError(f"{name}: an MVM on array {a['array']} has no activation (kit bug)")
            used[key] = j + 1
            acts[idx[j]] = replace(acts[idx[j]], adc_bits=int(setting[0]), adc_shift=int(setting[1]))
    return replace(sched, activations=tuple(acts))


@dataclass(frozen=True)
class AdcSelection:
    """:func:`select_for_build`'s outcome: the choice, the compiled model and schedule carrying it, and the
    stream's error on held-out inputs."""

    choice: AdcChoice
    compiled: object
    schedule: object
    heldout_error: float

    def to_dict(self) -> dict:
        """The ``adc_selection`` object of ``report.json``."""
        return {**self.choice.to_dict(), "heldout_error": round(self.heldout_error, 6),
                "met_on_heldout": self.heldout_error <= self.choice.max_error,
                "calib_seeds": [CALIB_SEEDS[0], CALIB_SEEDS[-1]],
                "heldout_seeds": [HELDOUT_SEEDS[0], HELDOUT_SEEDS[-1]]}


def _batch(compiled, seeds) -> dict[str, np.ndarray]:
    from compiler.stream_inputs import stream_inputs  # noqa: PLC0415
    per = [stream_inputs(compiled, s) for s in seeds]
    return {name: np.stack([np.asarray(d[name], dtype=np.int64) for d in per]) for name in compiled.programs}


def _refs(compiled, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from compiler.quant import float_product  # noqa: PLC0415
    return {name: float_product(compiled.quant[name], inputs[name].T, p.requant_shift).T
            for name, p in compiled.programs.items()}


def select_for_build(compiled, max_error: float) -> AdcSelection:
    """Choose every MVM's ADC setting of ``compiled`` (a :class:`compiler.program.CompiledModel`) on the
    calibration seeds; return it with the programs and schedule rewritten and the held-out error."""
    from sw_model.machine import Machine  # noqa: PLC0415
    machine = Machine(compiled.hw)
    for c in compiled.weight_commands:
        machine.execute(c)
    order = compiled.program_order()
    progs = [Prog.of(compiled.programs[n]) for n in order]
    calib = _batch(compiled, CALIB_SEEDS)
    choice = select(machine, progs, calib, _refs(compiled, calib), max_error)
    held = _batch(compiled, HELDOUT_SEEDS)
    held_err = stream_error(_run(machine, apply(progs, choice.settings), held), _refs(compiled, held))
    programs = {}
    for name, p in compiled.programs.items():
        s = iter(choice.settings[name])
        programs[name] = replace(p, commands=tuple(_set(c, next(s)) if c.op is Opcode.MVM else c
                                                   for c in p.commands))
    sched = schedule_with(compiled, choice.settings)
    return AdcSelection(choice, replace(compiled, programs=programs, schedule=sched), sched, held_err)
