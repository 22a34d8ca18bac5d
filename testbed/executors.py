"""Where independent jobs (sweep combinations) execute: local processes, or an existing Dask or Ray cluster.

l4stb does no process management of its own beyond the standard library's process pool; a cluster is
the user's (addresses from DASK_SCHEDULER_ADDRESS / RAY_ADDRESS) and must see the same workdir path
(shared storage), because every job writes its run folder there.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Iterator

from l4stb import interrupts
from l4stb.errors import L4stbError


def run_all(name: str, fn: Callable[[Any], Any], items: Iterable[Any], *, jobs: int) -> Iterator[Any]:
    """Yield ``fn(item)`` for every item, in completion order, on the chosen executor."""
    items = list(items)
    if not items:
        return
    if name == "local":
        yield from _local(fn, items, jobs)
    elif name == "dask":
        yield from _dask(fn, items)
    elif name == "ray":
        yield from _ray(fn, items)
    else:
        raise L4stbError(f"unknown executor '{name}'; use local, dask or ray.")


def _local(fn, items, jobs):
    if jobs <= 1 or len(items) == 1:
        for item in items:
            yield fn(item)
        return
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(items)), initializer=interrupts.die_with_parent,
                               initargs=(os.getpid(),))
    try:
        for fut in as_completed([pool.submit(fn, item) for item in items]):
            yield fut.result()
    except BaseException:
        interrupts.stop_workers(pool)  # Ctrl-C or a failed job: no orphan keeps working on the workdir
        raise
    pool.shutdown(wait=True)


def _dask(fn, items):
    try:
        # lazy: dask: an optional extra
        from dask.distributed import Client, as_completed as dask_completed
    except ImportError:
        raise L4stbError("the dask executor needs dask.distributed: `pip install 'l4stb[dask]'`.") from None
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    # Without an address Dask starts a local cluster, which is still useful for trying the executor out.
    with Client(address) if address else Client(processes=False, dashboard_address=None) as client:
        for fut in dask_completed(client.map(fn, items, pure=False)):
            yield fut.result()


def _ray(fn, items):
    try:
        # lazy: ray: an optional extra
        import ray
    except ImportError:
        raise L4stbError("the ray executor needs ray: `pip install 'l4stb[ray]'`.") from None
    ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    remote = ray.remote(fn)
    pending = [remote.remote(item) for item in items]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
