"""Design-space sweeps: a grid file of build options and configuration keys, one Dask task per point.

- :mod:`mapper.sweep.grid` -- the grid file (``[sweep]``, ``[fixed]``, ``[axes]``): parsing, validation, points
  in a fixed order, each with a content hash (:class:`~mapper.sweep.grid.Point`).
- :mod:`mapper.sweep.point` -- the one adapter to the build pipeline: :func:`~mapper.sweep.point.evaluate_point`.
- :mod:`mapper.sweep.store` -- the sweep folder: resume rules, one cached JSON file per finished point.
- :mod:`mapper.sweep.engine` -- runs the missing points serially or on Dask (local cluster or a scheduler).
- :mod:`mapper.sweep.runner` -- :func:`~mapper.sweep.runner.run_sweep`: grid + folder -> rows (what the command and
  ``mapper reproduce`` call).
- :mod:`mapper.sweep.results` -- rows, Parquet/CSV, Pareto fronts, the console summary.
- :mod:`mapper.sweep.plots` -- the Pareto PNGs.

``python -m mapper sweep`` (:mod:`mapper.cli_sweep`) ties them together; ``docs/sweep.md`` is the user guide.
"""
