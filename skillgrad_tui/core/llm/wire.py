"""The model worker's wire format: length-prefixed JSON frames over a pipe, and the errors that
cross it.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. Requests carry an `id`
and an `op`; replies carry the same `id` and either `ok` (the result) or `error` (a serialised
exception that the parent raises again as the same type).
"""

from __future__ import annotations

import json
import os
import select
import struct
from typing import Any

from skillgrad_tui.core.llm.errors import BackendError, ModelError, OutputInvalid, PromptTooLong, SkillgradError
from skillgrad_tui.core.llm.base import CompletionRequest, Message, Usage

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this is a broken stream, not a message


class StreamClosed(Exception):
    """The other end closed the pipe (for the parent: the worker died)."""


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, message: dict[str, Any]) -> None:
    view = memoryview(encode(message))
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameReader:
    """Reads frames from a file descriptor; `read(timeout)` returns None when the timeout passes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()

    def _frame(self) -> dict[str, Any] | None:
        if len(self._buf) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buf)
        if size > MAX_FRAME:
            raise StreamClosed(f"frame of {size} bytes: the stream is corrupt")
        if len(self._buf) < _HEADER.size + size:
            return None
        data = bytes(self._buf[_HEADER.size : _HEADER.size + size])
        del self._buf[: _HEADER.size + size]
        message: dict[str, Any] = json.loads(data.decode("utf-8"))
        return message

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if timeout is not None:
                ready, _, _ = select.select([self.fd], [], [], timeout)
                if not ready:
                    return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise StreamClosed("end of stream")
            self._buf += chunk


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """An exception as data; the types the parent knows keep their fields."""
    if isinstance(exc, PromptTooLong):
        return {"type": "PromptTooLong", "prompt_tokens": exc.prompt_tokens, "n_ctx": exc.n_ctx}
    if isinstance(exc, OutputInvalid):
        usage = exc.usage.to_dict() if isinstance(exc.usage, Usage) else None
        # OutputInvalid's str() already appends the attempts and the last output; send the head.
        head = str(exc.message).split(" (after ", 1)[0]
        return {"type": "OutputInvalid", "message": head, "attempts": exc.attempts,
                "last_text": exc.last_text, "usage": usage}
    if isinstance(exc, SkillgradError):
        return {"type": type(exc).__name__, "message": exc.message,
                "path": str(exc.path) if exc.path is not None else None, "line": exc.line}
    return {"type": "Bug", "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(d: dict[str, Any]) -> SkillgradError:
    kind = d.get("type")
    if kind == "PromptTooLong":
        return PromptTooLong(int(d["prompt_tokens"]), int(d["n_ctx"]))
    if kind == "OutputInvalid":
        usage = Usage(**d["usage"]) if d.get("usage") else None
        return OutputInvalid(d["message"], int(d["attempts"]), d["last_text"], usage)
    if kind == "ModelError":
        return ModelError(d["message"], d.get("path"), d.get("line"))
    if kind == "Bug":
        return BackendError(f"the model worker failed: {d['message']}")
    return BackendError(str(d.get("message", "the model worker failed")), d.get("path"), d.get("line"))


def request_from_wire(d: dict[str, Any]) -> CompletionRequest:
    """The inverse of `CompletionRequest.to_dict()`."""
    fields = dict(d)
    if fields.get("messages") is not None:
        fields["messages"] = tuple(Message(m["role"], m["content"]) for m in fields["messages"])
    fields["stop"] = tuple(fields.get("stop") or ())
    return CompletionRequest(**fields)
