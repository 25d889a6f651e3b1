"""A bounded pool of workers, one job per host or guest: a host that fails does not stop the others (each
finishes what it can), Ctrl-C stops them all cleanly, and every failure is reported with its host (or
guest), stage and cause."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import LxdkvmError
from ..hosts import readiness

REPAIR = "run `lxdkvm up` again to repair, or `lxdkvm down` to remove the lab"


class UpFailed(LxdkvmError):
    """At least one host did not come up; the message says which, at which stage, and why."""



def run_pool(jobs: dict[str, Callable[[threading.Event], object]], workers: int,
              cancel: threading.Event) -> tuple[dict[str, object], dict[str, BaseException]]:
    """Run jobs on a bounded pool, each to its end whatever the others do; (results, errors) by name.
    Ctrl-C sets `cancel`, so every job stops cleanly, and is raised once every worker has stopped."""
    results: dict[str, object] = {}
    errors: dict[str, BaseException] = {}
    if not jobs:
        return results, errors
    executor = ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs))))
    futures: dict[str, Future] = {}
    try:
        for name, job in jobs.items():
            futures[name] = executor.submit(job, cancel)
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - collected and reported per host
                errors[name] = exc
    except KeyboardInterrupt:
        cancel.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results, errors


def failure(errors: dict[str, BaseException], done: list[str] | None = None) -> UpFailed:
    """What failed, each with its own message, then the hosts (or guests) DONE despite it."""
    first = [e for e in errors.values() if not isinstance(e, readiness.Cancelled)]
    lines = [str(e) for e in first] + [str(e) for e in errors.values() if isinstance(e, readiness.Cancelled)]
    if done:
        lines.append(f"{len(done)} of {len(done) + len(errors)} are ready: {', '.join(sorted(done))}")
    return UpFailed("\n".join(lines) + "\n" + REPAIR)
