"""Co-simulation: CIM command streams on the exported RTL under cocotb, checked against sw_model.

``python -m sim run`` (mapper streams) and ``python -m sim check`` (random and illegal streams); the library is
:mod:`sim.runner` (builds and jobs), :mod:`sim.streams`, :mod:`sim.model_stream` and :mod:`sim.flow`. The
cocotb side is :mod:`sim.driver`, :mod:`sim.monitor`, :mod:`sim.checker` and :mod:`sim.cocotb_tests`. See
``docs/cosim.md``.
"""
