"""Where the build's tasks run: in this process, a local process pool, or a Dask cluster.

Tasks are plain functions of picklable values (:func:`phonotheca.build.work.stage`,
:func:`phonotheca.build.packing.pack_job`) that read sources and write into the archive
directory; with a cluster, that directory (and the sources) must be at the same path on
every worker, e.g. a shared file system (docs/SCALE.md). Results come back to the one
process that writes the catalog, so the outputs do not depend on where tasks ran.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TaskFuture(Protocol[R]):  # type: ignore[misc]
    def result(self) -> R: ...


class Executor(Protocol):
    workers: int

    def submit(self, fn: Callable[..., R], /, *args: Any) -> TaskFuture[R]: ...

    def close(self) -> None: ...


class _Done:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value


class InlineExecutor:
    """Runs each task at once in this process (``--workers 0``): for debugging."""

    workers = 1

    def submit(self, fn: Callable[..., R], /, *args: Any) -> TaskFuture[R]:
        return _Done(fn(*args))

    def close(self) -> None:
        pass


class PoolExecutor:
    """A local pool of worker processes (forkserver: no inherited catalog connections)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
        )

    def submit(self, fn: Callable[..., R], /, *args: Any) -> TaskFuture[R]:
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster, e.g. ``tcp://scheduler:8786``."""

    def __init__(self, address: str) -> None:
        from distributed import Client

        try:
            self._client = Client(  # type: ignore[no-untyped-call]
                address, timeout="20s", set_as_default=False
            )
        except OSError as exc:
            raise BuildSetupError(
                f"cannot reach the Dask scheduler at {address}: {exc}; start one with"
                " 'dask scheduler' and workers with 'dask worker ADDRESS'"
            ) from None
        workers = self._client.scheduler_info().get("workers", {})
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, fn: Callable[..., R], /, *args: Any) -> TaskFuture[R]:
        # pure=False: the same arguments twice are two tasks (a re-pack after a failure).
        return self._client.submit(fn, *args, pure=False)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class BuildSetupError(Exception):
    """The executor cannot start (no scheduler, bad worker count)."""


def make_executor(workers: int, scheduler: str | None) -> Executor:
    if scheduler:
        return DaskExecutor(scheduler)
    if workers < 0:
        raise BuildSetupError(f"--workers must be 0 or more, not {workers}")
    return InlineExecutor() if workers == 0 else PoolExecutor(workers)


def ordered_map(
    executor: Executor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[tuple[T, R]]:
    """``fn`` over ``items`` on the executor, at most ``window`` in flight, in order."""
    pending: deque[tuple[T, TaskFuture[R]]] = deque()
    for item in items:
        pending.append((item, executor.submit(fn, item)))
        if len(pending) >= window:
            done_item, future = pending.popleft()
            yield done_item, future.result()
    while pending:
        done_item, future = pending.popleft()
        yield done_item, future.result()
