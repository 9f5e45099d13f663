"""Where jobs run: a local process pool, or a Dask distributed cluster.

Both take a picklable module-level function and its arguments and give back a future with
``result()``; the runner does not care which. Dask is used as it is (``Client.submit``): no
home-made distributed engine.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable
from typing import Any, Protocol

from biobank.dicom.io import quiet_pydicom
from biobank.errors import InvalidInput


class Waitable(Protocol):
    """A future: ``concurrent.futures.Future`` or ``distributed.Future``."""

    def result(self, timeout: float | None = None) -> Any:
        """The value, or raise the error of the call."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(future)`` when the call ends (at once if it already has)."""


class Executor(Protocol):
    """Runs functions somewhere; see :class:`LocalExecutor` and :class:`DaskExecutor`."""

    name: str
    parallelism: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waitable:
        """Start ``fn(*args)``."""

    def close(self) -> None:
        """Release the workers (or the connection)."""


class LocalExecutor:
    """A pool of ``jobs`` local worker processes (forkserver: safe beside threads)."""

    def __init__(self, jobs: int = 0) -> None:
        self.parallelism = jobs if jobs > 0 else (os.cpu_count() or 1)
        self.name = f"local pool ({self.parallelism} processes)"
        context = multiprocessing.get_context("forkserver")
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.parallelism, mp_context=context, initializer=quiet_pydicom
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waitable:
        """Start ``fn(*args)`` in a worker process."""
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """A Dask distributed cluster, by scheduler address (or an existing ``Client``)."""

    def __init__(
        self, scheduler: str | None = None, *, client: Any = None, timeout: float = 30.0
    ) -> None:
        from distributed import Client  # an optional heavy import, only when Dask is used

        if client is None and not scheduler:
            raise InvalidInput("DaskExecutor needs a scheduler address such as tcp://host:8786")
        self._owns = client is None
        try:
            self._client: Any = (
                client if client is not None else Client(scheduler, timeout=timeout)  # type: ignore[no-untyped-call]
            )
        except OSError as exc:
            raise InvalidInput(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); "
                "check BIOBANK_DASK_SCHEDULER and that the scheduler runs"
            ) from None
        self._client.run(quiet_pydicom)  # the workers' pydicom warnings quote header values
        workers = self._client.scheduler_info().get("workers", {})
        self.parallelism = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        address = self._client.scheduler_info().get("address", scheduler)
        self.name = f"Dask at {address} ({len(workers)} workers)"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Waitable:
        """Start ``fn(*args)`` on the cluster (``pure=False``: every job runs)."""
        future: Waitable = self._client.submit(fn, *args, pure=False)
        return future

    def close(self) -> None:
        """Close the connection (the cluster keeps running)."""
        if self._owns:
            self._client.close()


def executor_for(scheduler: str | None, jobs: int = 0) -> LocalExecutor | DaskExecutor:
    """Dask when a scheduler address is given, else a local pool of ``jobs`` processes."""
    return DaskExecutor(scheduler) if scheduler else LocalExecutor(jobs)


__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "Waitable", "executor_for"]
