"""Cycle counts of the generated hardware: the formulas live in :mod:`cimisa.timing` (one definition, which the
performance simulator's stream mode also reads); this module re-exports them for the RTL side."""

from cimisa.timing import *  # noqa: F401,F403
from cimisa.timing import __all__  # noqa: F401
