"""Co-simulation: CIM command streams on the exported RTL under cocotb, checked against sw_model.

``python -m sim run`` (mapper streams) and ``python -m sim check`` (random and illegal streams): :mod:`sim.flow`.
The library: :mod:`sim.runner` (running jobs under cocotb, and the one import point), :mod:`sim.tools` (finding
the simulators), :mod:`sim.cache` (the shared build cache and its locks), :mod:`sim.builds` (export and compile),
:mod:`sim.cases` (sw_model's expectations), :mod:`sim.streams` (the one generator's streams,
:mod:`cimisa.streamgen`), :mod:`sim.model_stream` and :mod:`sim.fast` (the C++ harness). The cocotb side is
:mod:`sim.driver`, :mod:`sim.monitor`, :mod:`sim.checker` (the one checker, :mod:`cimisa.check`, on a case) and
:mod:`sim.cocotb_tests`. See ``docs/cosim.md``.
"""
