"""The human gate between the optimiser's thread and the review screen, without polling.

optimize() calls its review function on the worker thread and expects a decision back. The
bridge posts the request to the UI with a `concurrent.futures.Future` and blocks on it; the
review screen's dismiss callback resolves it with the decision, and a cancel (escape, q) resolves
it with `Cancelled`: the step stays undecided in the run log (not "rejected"), nothing reaches
the disk, and a resumed run asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from skillgrad_tui.core.errors import Cancelled


class ReviewBridge:
    """A ReviewFn for optimize(): `show(request, answer)` hands the request to the UI."""

    def __init__(self, show: Callable[[Any, "Future[Any]"], None]) -> None:
        self._show = show
        self._lock = threading.Lock()
        self._waiting: Future[Any] | None = None
        self._cancelled = False

    def __call__(self, request: Any) -> Any:
        answer: Future[Any] = Future()
        with self._lock:
            if self._cancelled:
                raise Cancelled()
            self._waiting = answer
        try:
            self._show(request, answer)
            return answer.result()  # blocks the worker thread only; resolved by the UI or cancel()
        finally:
            with self._lock:
                self._waiting = None

    def cancel(self) -> None:
        """Any thread: the review waiting now (and any later one) raises Cancelled."""
        with self._lock:
            self._cancelled = True
            waiting = self._waiting
        if waiting is not None:
            resolve(waiting, error=Cancelled())


def resolve(answer: "Future[Any]", decision: Any = None, *, error: BaseException | None = None) -> bool:
    """Resolve `answer` once; a second resolution (a cancel racing a key press) is ignored."""
    if answer.done():
        return False
    try:
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(decision)
    except Exception:  # InvalidStateError: resolved meanwhile by the other side
        return False
    return True


__all__ = ["ReviewBridge", "resolve"]
