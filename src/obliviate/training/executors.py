"""Where independent training tasks run: in-process, a local process pool, or Ray.

An executor runs a picklable function over a list of tasks and returns the results in task
order. It never changes a result, only where and when the work happens, so it is a runtime
setting (``OBLIVIATE_EXECUTOR``), not part of any model configuration: fitting with the
process pool and forgetting inline give the same checkpoints, bit for bit. That needs one
thing held fixed: torch's thread count, since some CPU kernels (matrix products in the
sequential loop) sum in a different order with more threads. Every executor therefore runs
each task with ``threads_per_worker`` threads (default 1), in-process ones included.

Only references cross process boundaries. A training task names the feature store, the
rows it reads, the checkpoint store URL, the configuration and seeds; the worker reads
features itself (memory-mapped), writes checkpoints to the content-addressed store (a
retried task writes the same ids) and returns ids and hashes. The parent process alone
writes to the provenance registry. Feature tensors therefore never enter Ray's object
store, which spills to local disk outside the deletion path.

Ray (``pip install 'obliviate[ray]'``) is imported only when a Ray executor is used and
needs an explicit address: ``"local"`` starts a private instance (tests), ``"auto"`` or
``"ray://host:port"`` joins a cluster, so a misconfigured production run fails instead of
silently starting a one-machine cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import torch

from obliviate.errors import ConfigError, TrainingError
from obliviate.registry import Registry

if TYPE_CHECKING:
    from obliviate.settings import Settings

__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "default_executor",
    "make_executor",
]

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs independent tasks and returns their results in order.

    Attributes:
        name: the registry name (``"inline"``, ``"process"``, ``"ray"``).
        in_process: tasks run in the calling process, so functions and tasks need not be
            picklable.
    """

    name: str
    in_process: bool

    def run(self, *, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """``[fn(task) for task in tasks]``, possibly in parallel; the first error is raised."""
        ...

    def close(self) -> None:
        """Releases workers; the executor may be used again afterwards (it restarts)."""
        ...


EXECUTORS: Registry[Callable[[Settings], Executor]] = Registry("executor")


def _with_threads(threads: int, fn: Callable[[T], R], task: T) -> R:
    # Runs in a worker: pins torch's intra-op threads, since num_cpus is only a hint to a
    # scheduler and a worker per core with all-core thread pools would oversubscribe.
    torch.set_num_threads(threads)
    return fn(task)


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


class InlineExecutor:
    """Runs tasks one after another in the calling process (tests, debugging).

    Args:
        threads: torch intra-op threads while a task runs (restored afterwards). Some CPU
            kernels sum in a different order with a different thread count, so every
            executor runs tasks with the same count (``threads_per_worker``) to give the
            same bits.
    """

    name: str = "inline"
    in_process: bool = True

    def __init__(self, *, threads: int = 1) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1; got {threads!r}.")
        self.threads = threads

    def run(self, *, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """Calls ``fn`` on each task in order."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return [fn(task) for task in tasks]
        finally:
            torch.set_num_threads(previous)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"InlineExecutor(threads={self.threads})"


class ProcessExecutor:
    """A pool of spawned worker processes on this machine (the default).

    Spawned, not forked: forking a process whose torch thread pools are running can
    deadlock the child. Each worker pins torch to ``threads_per_worker`` threads.

    Args:
        workers: processes; default one per available core.
        threads_per_worker: torch intra-op threads in each worker.
        retries: times a batch is re-submitted after a worker died (killed for memory,
            say); tasks are idempotent because checkpoints are content-addressed.
    """

    name: str = "process"
    in_process: bool = False

    def __init__(
        self, *, workers: int | None = None, threads_per_worker: int = 1, retries: int = 1
    ) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.workers = workers if workers is not None else max(cores or os.cpu_count() or 1, 1)
        problems = []
        if not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"workers must be an integer >= 1; got {workers!r}")
        if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
            problems.append(
                f"threads_per_worker must be an integer >= 1; got {threads_per_worker!r}"
            )
        if not isinstance(retries, int) or retries < 0:
            problems.append(f"retries must be an integer >= 0; got {retries!r}")
        if problems:
            raise ConfigError("invalid ProcessExecutor: " + "; ".join(problems) + ".")
        self.threads_per_worker = threads_per_worker
        self.retries = retries
        self._pool: ProcessPoolExecutor | None = None
        self._guard = threading.Lock()

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._guard:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.threads_per_worker,),
                )
            return self._pool

    def run(self, *, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """Runs the tasks on the pool; restarts a broken pool up to ``retries`` times."""
        if not tasks:
            return []
        for attempt in range(self.retries + 1):
            pool = self._get_pool()
            futures = [pool.submit(_with_threads, self.threads_per_worker, fn, t) for t in tasks]
            try:
                return [future.result() for future in futures]
            except BrokenProcessPool as exc:
                self.close()
                if attempt == self.retries:
                    raise TrainingError(
                        f"a training worker process died ({exc}); {self.retries + 1} attempts "
                        "failed. Workers are spawned, so a script that trains must run its code "
                        "under `if __name__ == '__main__':`; otherwise check memory limits, use "
                        "fewer workers, or set OBLIVIATE_EXECUTOR=inline."
                    ) from exc
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Shuts the pool down (waits for running tasks)."""
        with self._guard:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (
            f"ProcessExecutor(workers={self.workers}, threads_per_worker={self.threads_per_worker})"
        )


class RayExecutor:
    """One Ray task per training task, with retries (extra ``ray``).

    Args:
        address: ``"local"`` (a private instance, for tests), ``"auto"`` (the running
            cluster) or ``"ray://host:port"``; required, never guessed.
        num_cpus: CPUs of a ``"local"`` instance (default: all).
        max_retries: re-runs of a task after a worker or node died.
        retry_exceptions: also re-run a task that raised one of these (transient I/O).
        threads_per_worker: torch intra-op threads in each task.
        init_options: extra keyword arguments for ``ray.init``.
    """

    name: str = "ray"
    in_process: bool = False

    def __init__(
        self,
        *,
        address: str,
        num_cpus: int | None = None,
        max_retries: int = 3,
        retry_exceptions: tuple[type[BaseException], ...] = (OSError,),
        threads_per_worker: int = 1,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(address, str) or not (
            address in ("local", "auto") or address.startswith("ray://")
        ):
            raise ConfigError(
                "RayExecutor needs an explicit address: 'local' (private instance, tests), "
                f"'auto' (the running cluster) or 'ray://host:port'; got {address!r}. "
                "Set OBLIVIATE_RAY_ADDRESS."
            )
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.threads_per_worker = threads_per_worker
        self.init_options = dict(init_options or {})
        self._started = False

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the Ray executor needs Ray: pip install 'obliviate[ray]'.") from exc
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address == "local" and self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            options.update(self.init_options)
            ray.init(address=self.address, **options)
            self._started = True
        return ray

    def run(self, *, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """Submits one task each and waits for all of them (results in task order)."""
        if not tasks:
            return []
        ray = self._ray()
        remote = ray.remote(_with_threads).options(
            num_cpus=1,
            max_retries=self.max_retries,
            retry_exceptions=list(self.retry_exceptions),
        )
        refs = [remote.remote(self.threads_per_worker, fn, task) for task in tasks]
        try:
            results: list[R] = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            raise cause from None
        return results

    def close(self) -> None:
        """Shuts Ray down if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"


@EXECUTORS.register("inline")
def _inline(settings: Settings) -> Executor:
    return InlineExecutor(threads=settings.threads_per_worker)


@EXECUTORS.register("process")
def _process(settings: Settings) -> Executor:
    return ProcessExecutor(
        workers=settings.executor_workers, threads_per_worker=settings.threads_per_worker
    )


@EXECUTORS.register("ray")
def _ray_executor(settings: Settings) -> Executor:
    if settings.ray_address is None:
        raise ConfigError(
            "OBLIVIATE_EXECUTOR=ray needs OBLIVIATE_RAY_ADDRESS: 'auto' or 'ray://host:port' "
            "for a cluster, 'local' for a private instance."
        )
    return RayExecutor(address=settings.ray_address, threads_per_worker=settings.threads_per_worker)


def make_executor(settings: Settings | None = None) -> Executor:
    """A new executor as the settings (``OBLIVIATE_EXECUTOR`` etc.) say."""
    from obliviate.settings import Settings

    settings = settings if settings is not None else Settings()
    return EXECUTORS.get(settings.executor)(settings)


_DEFAULT: dict[tuple[Any, ...], Executor] = {}
_DEFAULT_GUARD = threading.Lock()


def default_executor() -> Executor:
    """The process-wide executor from the environment, shared so pools start once."""
    from obliviate.settings import Settings

    settings = Settings()
    key = (
        settings.executor,
        settings.executor_workers,
        settings.threads_per_worker,
        settings.ray_address,
    )
    with _DEFAULT_GUARD:
        executor = _DEFAULT.get(key)
        if executor is None:
            executor = _DEFAULT[key] = make_executor(settings)
        return executor
