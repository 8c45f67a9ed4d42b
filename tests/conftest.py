"""Shared test settings: hypothesis profiles (CI runs more examples, deterministically) and the test tiers.

Tiers, by what a test needs (markers; ``docs/architecture.md`` lists them):

* unit (no marker): numpy, the compiler, the golden model, the torch side on tiny models;
* ``cli``: the bad-input suites, every case a real command line in its own interpreter (set here by file);
* ``rtl``: Amaranth simulation of the RTL, Verilog export, lint and synthesis (set here by file and name);
* ``cosim``: cocotb + Verilator / Icarus co-simulation and the fast Verilator harness;
* ``realmodel``: the real pretrained all-MiniLM-L6-v2;
* ``slow``: long-running cases of any tier.

The quick loop is ``python -m pytest -m "not cli and not rtl and not cosim and not realmodel and not slow"``;
CI runs all.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=80, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Test files whose every test simulates, exports or synthesises the RTL.
RTL_FILES = ("test_hw_tile.py", "test_hw_units.py", "test_hw_export.py")


#: Test files whose cases run the kit's command lines as subprocesses on bad input (about 1 s of imports each).
CLI_FILES = ("test_cli_conventions.py", "test_config_inputs.py", "test_mapper_inputs.py", "test_sim_cli.py")


def _is_rtl(item: pytest.Item) -> bool:
    return Path(str(item.fspath)).name in RTL_FILES or item.name.startswith("test_rtl_")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_rtl(item) and "cosim" not in item.keywords:
            item.add_marker(pytest.mark.rtl)
        if Path(str(item.fspath)).name in CLI_FILES:
            item.add_marker(pytest.mark.cli)
