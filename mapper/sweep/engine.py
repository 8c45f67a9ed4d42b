"""Run a sweep's missing points: in this process, on a local Dask cluster, or on a remote Dask scheduler.

One Dask task per point (:func:`mapper.sweep.point.run_point` around the point function), keyed by the point's
hash. The caller's ``on_result`` runs in this process as each task completes (``as_completed``), so results
are cached one by one: a worker that dies loses only its running point, which the scheduler runs again on
another worker (``distributed.scheduler.allowed-failures`` times); a point that still cannot finish becomes a
row with its error. An interrupted client loses only the points still running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator

from cimisa import progress
from cimisa.errors import KitError
from mapper.sweep.point import evaluate_point, run_point

__all__ = ["run_points", "dask_client"]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None = None, *, say: Callable[[str], None] = _say) -> Iterator:
    """Yield a ``dask.distributed.Client``: of ``scheduler`` (``tcp://host:port``), or of a new local cluster
    of ``workers`` single-threaded worker processes; say where the dashboard is (or that there is none)."""
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415
    # distributed logs every connection at INFO on stderr; the kit shows them with -v only (a lost worker is a
    # WARNING: shown with -v too, its point runs again elsewhere)
    logging.getLogger("distributed").setLevel(logging.INFO if progress.verbose() else logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise KitError(f"cannot reach the Dask scheduler {scheduler}: {' '.join(str(exc).split())}") from None
        with client:
            dash = client.scheduler_info().get("services", {}).get("dashboard")
            say(f"dask: scheduler {scheduler}, {len(client.scheduler_info().get('workers', {}))} workers; "
                + (f"dashboard {client.dashboard_link}" if dash else "dashboard unavailable (the scheduler has none)"))
            yield client
        return
    import dask  # noqa: PLC0415
    has_bokeh = importlib.util.find_spec("bokeh") is not None
    # The workers' statistical profiler samples every 10 ms: about 15% of a point's time here (the nanny hands
    # this setting to the worker processes it starts).
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)   # any free port
    with cluster, Client(cluster) as client:
        say(f"dask: local cluster of {workers} worker process{'es' * (workers != 1)}; "
            + (f"dashboard {client.dashboard_link}" if has_bokeh
               else "dashboard unavailable (install bokeh>=3.1 for it)"))
        yield client


def run_points(todo: list, on_result: Callable[[object, dict], None], *, workers: int = 0,
               scheduler: str | None = None, func: Callable = evaluate_point,
               say: Callable[[str], None] = _say) -> None:
    """Evaluate every point of ``todo`` with ``func``; call ``on_result(point, outcome)`` in this process as each
    finishes (``outcome``: :func:`~mapper.sweep.point.run_point`'s dict). ``workers`` 0 and no ``scheduler``:
    one after the other in this process. ``todo`` must not repeat a point id (the id is the task key)."""
    if not todo:
        return
    if workers == 0 and not scheduler:
        for p in todo:
            on_result(p, run_point(func, p))
        return
    from dask.distributed import as_completed  # noqa: PLC0415
    with dask_client(workers, scheduler, say=say) as client:
        futures = {client.submit(run_point, func, p, key=f"cim-sweep-{p.id}", retries=2): p for p in todo}
        for fut in as_completed(list(futures)):
            p = futures.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: recorded, computed again next run
                text = " ".join(str(exc).split()) or "no message"
                outcome = {"figures": {}, "error": f"{type(exc).__name__}: {text}", "cache": False}
            fut.release()
            on_result(p, outcome)
