"""cocotb test modules, run inside the simulator's process by :func:`sim.runner.run`."""
