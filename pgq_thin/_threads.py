"""Plain `def` handlers on a thread pool, their results handed to the event loop in batches.

`asyncio.wrap_future` wakes the loop once per call (a write to its self-pipe each); here a
finishing thread queues its result and wakes the loop only when no wake-up is pending, so a
burst of short handlers costs one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Handler = Callable[[Any], Any]
Finished = tuple["asyncio.Future[Any]", Any, BaseException | None]


@dataclass(eq=False)
class ThreadCall:
    """One handler call: `result` is what the loop awaits, `thread` the pool's own future."""

    result: asyncio.Future[Any]
    thread: Future[None]

    def still_running(self) -> bool:
        """Once `result` is done or cancelled: whether the handler still holds its thread.

        Cancelling `result` cannot interrupt a running handler; a call cancelled before it
        started never will.
        """
        if not self.result.cancelled():
            return False  # the handler returned: that is how `result` got its value
        return not (self.thread.cancel() or self.thread.done())


class HandlerThreads:
    """Runs handlers in up to `max_workers` threads."""

    def __init__(self, max_workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="pgq-handler")
        self._finished: deque[Finished] = deque()
        self._wakeup_pending = False

    def start(self, handler: Handler, arg: Any) -> ThreadCall:
        """Queue `handler(arg)` (call from the event loop, in the context it should see)."""
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        # The handler runs in a copy of the caller's context: it sees the job's log context
        # and trace span as the caller set them.
        call = contextvars.copy_context().run
        return ThreadCall(
            result, self._executor.submit(call, self._call, loop, result, handler, arg)
        )

    def shutdown(self) -> None:
        """Drop queued calls; running handlers finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Any],
        handler: Handler,
        arg: Any,
    ) -> None:
        """In a handler thread: run the handler, queue its result, wake the loop if needed."""
        finished: Finished
        try:
            finished = (waiter, handler(arg), None)
        except StopIteration as exc:  # a Future refuses it; a coroutine would say the same
            error = RuntimeError("handler raised StopIteration")
            error.__cause__ = exc
            finished = (waiter, None, error)
        except BaseException as exc:  # the awaiting task reports it
            finished = (waiter, None, exc)
        self._finished.append(finished)
        if not self._wakeup_pending:
            self._wakeup_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """On the loop: complete the awaitable of every handler that has returned."""
        self._wakeup_pending = False  # first: a result queued from now on wakes the loop again
        while self._finished:
            waiter, result, exc = self._finished.popleft()
            if waiter.done():  # its job already ended (timeout, cancel, shutdown)
                continue
            if exc is None:
                waiter.set_result(result)
            else:
                waiter.set_exception(exc)
