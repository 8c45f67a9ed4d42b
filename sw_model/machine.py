"""The golden model: executes a CIM command stream on numpy crossbars with exact integer semantics.

:func:`run` takes stream words (as written by :mod:`cimisa.stream`) and returns a :class:`RunResult`; the
per-opcode arithmetic is :mod:`cimisa.semantics` (``impl="fast"``, vectorised numpy) or
:mod:`sw_model.naive` (``impl="naive"``, explicit loops); both convert, round and wrap numbers with the one set of
rules in :mod:`cimisa.rules`. Errors stop the machine exactly as the RTL does: the
first failing check (see :func:`cimisa.semantics.check`) sets the state to ERROR with an
:class:`~cimisa.isa.ErrorCode` and the command index, and the command has no effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cimisa import semantics
from cimisa.concurrency import Scoreboard
from cimisa.config import HwConfig
from cimisa.isa import PAYLOAD, Command, ErrorCode, Isa, Opcode, RunState
from sw_model.errors import CimError, error_for
from sw_model.naive import NAIVE_ACTIONS

__all__ = ["Machine", "RunResult", "run", "run_commands"]


@dataclass
class RunResult:
    """What a run produced: final state, error code, failing command index, result words, counters."""

    state: RunState
    error: ErrorCode
    index: int                      # index of the failing command (or of the HALT / the next command)
    results: np.ndarray             # READ outputs, int64 holding int32 values, in order
    commands: int                   # commands executed (headers accepted)
    opcode_counts: dict = field(default_factory=dict)
    machine: Machine | None = None

    @property
    def ok(self) -> bool:
        """Whether the run halted cleanly."""
        return self.state is RunState.HALTED

    def status_tuple(self) -> tuple[str, str, int]:
        """Return ``(state, error, index)`` names, as compared with the RTL's status register."""
        return self.state.name, self.error.name, self.index


class Machine:
    """One CIM tile's golden model, executing commands one at a time.

    ``impl`` selects the arithmetic: ``"fast"`` (numpy, :mod:`cimisa.semantics`) or ``"naive"`` (loops).
    The fast machine also runs commands on a batch of input vectors at once (:meth:`set_batch`,
    :meth:`run_batch`).
    """

    def __init__(self, cfg: HwConfig, *, impl: str = "fast"):
        if impl not in ("fast", "naive"):
            raise ValueError(f"impl must be 'fast' or 'naive', not {impl!r}")
        self.cfg = cfg
        self.isa = Isa.of(cfg)
        self.impl = impl
        self.actions = semantics.ACTIONS if impl == "fast" else NAIVE_ACTIONS
        self.state = semantics.MachineState(cfg)
        self.run_state = RunState.RUNNING
        self.error = ErrorCode.NONE
        self.index = 0
        self.opcode_counts: dict[Opcode, int] = {}
        self.sync = Scoreboard(cfg)             # the concurrency hazards of a chip of several tiles

    def __repr__(self) -> str:
        return f"Machine({self.cfg.name!r}, impl={self.impl!r}, {self.run_state.name}, index={self.index})"

    def _fail(self, code: ErrorCode, message: str):
        self.run_state = RunState.ERROR
        self.error = code
        raise error_for(code, self.index, message)

    def _check(self, op: Opcode, args: dict) -> None:
        """Stop with the first error :func:`cimisa.semantics.check` finds in a header."""
        code = semantics.check(self.cfg, op, args)
        if code is ErrorCode.NONE:
            code = self.sync.step(op, args)
        if code is not ErrorCode.NONE:
            why = ""
            if code is ErrorCode.HAZARD:
                why = (f": its outputs overlap those of tile {self.sync.conflict(args)}'s MVMs since that tile's last"
                       f" barrier")
            self._fail(code, f"{code.name} in {op.name}({', '.join(f'{k}={v}' for k, v in args.items())}){why}")

    def execute(self, cmd: Command) -> None:
        """Check and execute one decoded command; raise a :class:`CimError` (and stop) if it is illegal."""
        if self.run_state is not RunState.RUNNING:
            raise RuntimeError(f"machine is {self.run_state.name}, cannot execute {cmd!r}")
        self._check(cmd.op, cmd.args)
        self._apply(cmd)

    def _apply(self, cmd: Command) -> None:
        """Execute one command that passed its checks."""
        action = self.actions[cmd.op]
        if cmd.op in PAYLOAD:
            action(self.state, data=cmd.data, **cmd.args)
        else:
            action(self.state, **cmd.args)
        self.opcode_counts[cmd.op] = self.opcode_counts.get(cmd.op, 0) + 1
        if cmd.op is Opcode.HALT:
            self.run_state = RunState.HALTED
        else:
            self.index += 1

    def set_batch(self, batch: int | None) -> None:
        """Run the following commands on ``batch`` input vectors at once (``None``: one vector, 1-D buffers).

        The buffers are replaced by zeroed ``(depth, batch)`` ones (:meth:`cimisa.semantics.MachineState.set_batch`);
        the weights stay. Every command then acts on each vector exactly as it would on a machine of its own
        (MVM runs as one batched kernel, :func:`cimisa.semantics.mvm_acc`). Only the fast arithmetic has batches.
        """
        if batch is not None and self.impl != "fast":
            raise ValueError("batched execution needs impl='fast'")
        if batch is not None and int(batch) < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        self.state.set_batch(batch)

    def run_batch(self, cmds: Iterable[Command], x: np.ndarray, in_addr: int, out_addr: int,
                  out_len: int) -> np.ndarray:
        """Run ``cmds`` once for a batch of input vectors and return their outputs.

        ``x`` (B, n) goes to input-buffer addresses ``in_addr..in_addr+n-1`` of each vector (a LOAD_IN per vector);
        the commands (checked, as :meth:`execute`) then run once for the whole batch; the result is ``(B,
        out_len)``, output-buffer addresses ``out_addr..``. Equal, vector for vector, to running them on one
        vector at a time. The buffers start zeroed and keep the batch afterwards.
        """
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2:
            raise ValueError(f"inputs must be (batch, n), not shape {x.shape}")
        b, n = x.shape
        if in_addr < 0 or in_addr + n > self.cfg.in_depth or out_addr < 0 or out_addr + out_len > self.cfg.out_depth:
            raise ValueError("batch inputs/outputs outside the buffers")
        self.set_batch(b)
        self.state.inbuf[in_addr:in_addr + n] = x.T
        self.sync.step(Opcode.LOAD_IN, {"addr": in_addr, "count": n})   # the LOAD_INs it stands for: a chip command
        for c in cmds:
            self.execute(c)
        return self.state.outbuf[out_addr:out_addr + out_len].T.copy()

    def run_words(self, words: Sequence[int]) -> None:
        """Execute stream words until HALT; raise :class:`CimError` on the first illegal command.

        A WRITE_W / LOAD_IN whose payload is cut short applies the complete payload words it received, then
        fails with TRUNCATED, as the RTL does.
        """
        isa = self.isa
        i, n = 0, len(words)
        while i < n and self.run_state is RunState.RUNNING:
            hdr = isa.decode_header(int(words[i]))
            if hdr is None:
                self._fail(ErrorCode.ILLEGAL_OPCODE, f"illegal opcode {isa.opcode_of(int(words[i]))}")
            op, args = hdr
            self._check(op, args)          # before the payload: a bad header is reported at the header
            if op in PAYLOAD:
                count, per = args["count"], isa.per_word(op)
                need = isa.payload_words(op, count)
                got = min(need, n - i - 1)
                values: list[int] = []
                for w in words[i + 1:i + 1 + got]:
                    values.extend(isa.decode_payload_word(op, int(w)))
                if got < need:
                    if got:
                        self.actions[op](self.state, data=tuple(values[:got * per]), **dict(args, count=got * per))
                    self._fail(ErrorCode.TRUNCATED, f"{op.name} payload truncated: needs {need} words, "
                                                    f"{got} left")
                self._apply(Command(op, args, tuple(values[:count])))
                i += 1 + need
            else:
                self._apply(Command(op, args))
                i += 1
        if self.run_state is RunState.RUNNING:
            self._fail(ErrorCode.TRUNCATED, "stream ended before HALT")

    def result(self) -> RunResult:
        """Return the outcome so far."""
        return RunResult(self.run_state, self.error, self.index, np.array(self.state.results, dtype=np.int64),
                         sum(self.opcode_counts.values()), dict(self.opcode_counts), self)


def run(cfg: HwConfig, words: Sequence[int], *, impl: str = "fast", raise_on_error: bool = True) -> RunResult:
    """Run stream ``words`` on a fresh golden model and return the result.

    With ``raise_on_error`` a stream that does not halt cleanly raises its :class:`CimError`; without it the
    error is reported in the result's ``state``/``error``/``index`` (how co-simulation compares with the RTL).
    """
    m = Machine(cfg, impl=impl)
    try:
        m.run_words(words)
    except CimError:
        if raise_on_error:
            raise
    return m.result()


def run_commands(cfg: HwConfig, cmds: Iterable[Command], **kw) -> RunResult:
    """Encode ``cmds`` with the command set and run the words (always through the binary encoding)."""
    return run(cfg, Isa.of(cfg).encode(cmds), **kw)
