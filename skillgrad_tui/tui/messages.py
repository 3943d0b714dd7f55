"""The typed messages the app's threads (run worker, watcher, suite loader) post to the UI.

`Message.post_message` is thread-safe, so a worker hands the UI what it found without a queue of
its own. Run events are merged: a burst that arrives while the UI is busy becomes one message
(see `EventOutbox`), so a burst costs one repaint and never queues up in front of a key press.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from textual.message import Message

from skillgrad_tui.core.events import Event

RunKind = Literal["optimize", "resume", "evaluate"]


class RunEvents(Message):
    """Engine events, oldest first. The list may still grow until the UI takes it (`take`)."""

    def __init__(self, outbox: "EventOutbox", events: list[Event]) -> None:
        super().__init__()
        self._outbox = outbox
        self._events = events

    def take(self) -> list[Event]:
        """The events of this burst; the worker's next event starts a new message."""
        return self._outbox.take(self._events)


class EventOutbox:
    """Posts engine events from the worker thread as `RunEvents`, one message per burst.

    The first event after the UI took the last batch posts a message carrying a fresh list; the
    events after it join that list until the UI takes it. No timer: the UI renders as soon as it
    is free, and the messages keep their order with the worker's other messages.
    """

    def __init__(self, post: Callable[[Message], object]) -> None:
        self._post = post
        self._lock = threading.Lock()
        self._open: list[Event] | None = None  # the list of the message not yet taken

    def put(self, event: Event) -> None:
        with self._lock:
            if self._open is not None:
                self._open.append(event)
                return
            self._open = [event]
            message = RunEvents(self, self._open)
        self._post(message)

    def take(self, events: list[Event]) -> list[Event]:
        with self._lock:
            if self._open is events:
                self._open = None
            return list(events)


class ReviewRequested(Message):
    """The optimiser asks for a decision on a patch; `answer` resolves what it waits on."""

    def __init__(self, request: Any, answer: "Future[Any]") -> None:
        super().__init__()
        self.request = request
        self.answer = answer


class SkillChanged(Message):
    """The watcher saw a burst of changes end; `folder_hash` is the content it ended on."""

    def __init__(self, summary: str, folder_hash: str) -> None:
        super().__init__()
        self.summary = summary
        self.folder_hash = folder_hash


class SuiteLoaded(Message):
    def __init__(self, suite: Any, error: str | None) -> None:
        super().__init__()
        self.suite = suite
        self.error = error


@dataclass(frozen=True)
class RunOutcome:
    """What a run worker returns: Textual's Worker.StateChanged carries it to the UI."""

    kind: RunKind
    outcome: Literal["done", "cancelled", "error"]
    detail: str = ""
    result: Any = None


__all__ = ["EventOutbox", "ReviewRequested", "RunEvents", "RunKind", "RunOutcome", "SkillChanged", "SuiteLoaded"]
