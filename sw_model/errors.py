"""Errors the golden model raises for illegal commands and streams; each names the command index."""

from __future__ import annotations

from cimisa.errors import KitError
from cimisa.isa import ErrorCode

__all__ = ["CimError", "IllegalOpcode", "OutOfRange", "BufferOverflow", "TruncatedStream", "Hazard", "error_for"]


class CimError(KitError):
    """The machine stopped with ``code`` at command ``index``."""

    def __init__(self, message: str, *, index: int, code: ErrorCode):
        super().__init__(f"command {index}: {message}")
        self.index = index
        self.code = code


class IllegalOpcode(CimError):
    """A header word holds an opcode that is not defined."""


class OutOfRange(CimError):
    """An array, row or column index (or window) lies outside the array, or an ADC setting is invalid."""


class BufferOverflow(CimError):
    """An input- or output-buffer access lies outside the buffer."""


class TruncatedStream(CimError):
    """The stream ended inside a command's payload, or before HALT."""


class Hazard(CimError):
    """An MVM's outputs may race with another tile's MVMs (:mod:`cimisa.concurrency`)."""


_CLASS = {
    ErrorCode.ILLEGAL_OPCODE: IllegalOpcode,
    ErrorCode.BAD_ARRAY: OutOfRange,
    ErrorCode.BAD_ROW: OutOfRange,
    ErrorCode.BAD_COL: OutOfRange,
    ErrorCode.BAD_ADC: OutOfRange,
    ErrorCode.BAD_IN_ADDR: BufferOverflow,
    ErrorCode.BAD_OUT_ADDR: BufferOverflow,
    ErrorCode.TRUNCATED: TruncatedStream,
    ErrorCode.HAZARD: Hazard,
}


def error_for(code: ErrorCode, index: int, message: str) -> CimError:
    """Return the exception class instance matching ``code``."""
    return _CLASS[code](message, index=index, code=code)
