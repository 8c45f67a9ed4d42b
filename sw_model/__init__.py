"""sw_model: the golden crossbar model. Pure numpy; imports the command set, nothing from ``hw``."""

from sw_model.errors import BufferOverflow, CimError, IllegalOpcode, OutOfRange, TruncatedStream
from sw_model.machine import Machine, RunResult, run, run_commands

__all__ = ["Machine", "RunResult", "run", "run_commands", "CimError", "IllegalOpcode", "OutOfRange",
           "BufferOverflow", "TruncatedStream"]
