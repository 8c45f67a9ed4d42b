"""hw: the synthesizable CIM tile in Amaranth 0.5 (decoder, controller, crossbar emulation, buffers).

:class:`~hw.tile.CimTile` is the top level; :mod:`hw.export` writes Verilog and lints it, :mod:`hw.synth` runs
yosys + nextpnr for FPGA resource and Fmax reports, :mod:`hw.pysim` drives the tile in Amaranth's simulator and
:mod:`hw.timing` gives the cycle count of each command. See ``docs/hw.md``.
"""
