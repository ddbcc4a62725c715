"""Background work that is held, bounded, logged, restarted and drained.

Two kinds of work live here:

- ``spawn``: a one-off task started after a request has returned (a turn, a send). The
  supervisor keeps a reference (so it is not garbage-collected mid-flight), logs what
  fails, and on shutdown cancels what is left after a grace period.
- ``keep``: a long-lived loop (the processor, the deliverer, the sweeper, routing, the
  Redis pub/sub reader, ...). No such loop may die silently: an exception is logged with
  its traceback, counted in ``frontdesk_loop_failures``, and the loop is started again
  after a backoff that doubles up to ``MAX_BACKOFF_SECONDS``. A loop that returns while
  the process is not stopping counts as a failure too. While a required loop waits to be
  restarted, ``down()`` names it and ``/readyz`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
# A loop that ran this long before failing starts over from the first backoff.
HEALTHY_SECONDS = 30.0


class Supervisor:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()
        self._required: set[str] = set()
        self._cancel_on_stop: set[str] = set()
        self._ending: set[str] = set()
        self._metrics = metrics
        self._stopping = asyncio.Event()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    def keep(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        required: bool = True,
        cancel_on_stop: bool = False,
    ) -> asyncio.Task[None]:
        """Run ``run()`` until ``stop`` is called or the returned task is cancelled,
        starting it again whenever it fails. ``required`` loops make the process unready
        while they are down. A loop that runs until cancelled and holds nothing a
        cancellation could strand (a listener, a reader) says ``cancel_on_stop``; others
        are told to stop by their owners and waited for. Names are unique among the loops
        kept at one time."""
        if name in self._loops and not self._loops[name].done():
            raise ValueError(f"a loop named {name!r} is already kept")
        if required:
            self._required.add(name)
        if cancel_on_stop:
            self._cancel_on_stop.add(name)
        self._set_up(name, True)
        task = asyncio.create_task(self._kept(name, run), name=f"loop:{name}")
        self._loops[name] = task
        return task

    async def _kept(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await self._keep(name, run)
        finally:  # ended on purpose (stopped or cancelled): no longer a loop to wait for
            self._required.discard(name)
            self._down.discard(name)

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await run()
            except asyncio.CancelledError:
                if self._stopping.is_set() or name in self._ending:
                    raise  # ended on purpose: by ``stop`` or ``end``
                # A cancellation nobody asked for (a library's leaking out, or a stray
                # ``cancel``): the loop is dead all the same, so it is a failure.
                self._uncancel()
                log.error("loop %s was cancelled while running; restarting in %.1fs",
                          name, backoff, exc_info=True)  # fmt: skip
            except Exception:
                if self._stopping.is_set():
                    log.warning("loop %s failed while stopping", name, exc_info=True)
                    return
                log.exception("loop %s failed; restarting in %.1fs", name, backoff)
            else:
                if self._stopping.is_set():
                    return
                log.error("loop %s returned while running; restarting in %.1fs", name, backoff)
            if time.monotonic() - started >= HEALTHY_SECONDS:
                backoff = FIRST_BACKOFF_SECONDS
            self._set_up(name, False)
            if self._metrics is not None:
                self._metrics.loop_failures.labels(name).inc()
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                return
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if self._stopping.is_set() or name in self._ending:
                    raise
                self._uncancel()  # a stray cancel while waiting: start it again now
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            self._set_up(name, True)

    @staticmethod
    def _uncancel() -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def end(self, name: str) -> None:
        """End the kept loop ``name`` on purpose (its owner is closing): it is cancelled,
        not restarted, and no longer counts for readiness."""
        task = self._loops.get(name)
        if task is None or task.done():
            return
        self._ending.add(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._ending.discard(name)

    def _set_up(self, name: str, up: bool) -> None:
        if up:
            self._down.discard(name)
        else:
            self._down.add(name)
        if self._metrics is not None:
            self._metrics.loop_up.labels(name).set(1 if up else 0)

    def down(self) -> list[str]:
        """The required loops that are waiting to be restarted now."""
        return sorted(self._down & self._required)

    async def stop(self, loops: float) -> None:
        """Tell kept loops not to restart, and wait up to ``loops`` seconds for them to
        return (their owners tell them to stop); cancel those still running after that."""
        self._stopping.set()
        for name in self._cancel_on_stop:
            self._loops[name].cancel()
        running = [task for task in self._loops.values() if not task.done()]
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=loops)
        for task in pending:
            log.warning("loop %s did not stop in %ss; cancelled", task.get_name(), loops)
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running work, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
