"""A deterministic Backend for tests and examples: answers come from a function of the request.

It honours the same contract as the real backends (schema validation included), so code tested
against it runs unchanged on a model. Never used to run real work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from skillgrad_tui.core.llm.base import CancelToken, Completion, CompletionRequest, Usage
from skillgrad_tui.core.llm.jsonout import complete_with_schema


@dataclass
class ScriptedBackend:
    """Answers with `respond(request)`; records every request it was asked in `calls`."""

    respond: Callable[[CompletionRequest], object]  # the answer is str() of what it returns
    model_id: str = "scripted"
    n_ctx: int = 32768
    calls: list[CompletionRequest] = field(default_factory=list)
    concurrency: int = 1  # requests it may answer at once (tests of concurrent evaluation)

    def complete(self, request: CompletionRequest, cancel: CancelToken | None = None) -> Completion:
        def once(req: CompletionRequest) -> Completion:
            if cancel is not None:
                cancel.raise_if_cancelled()
            self.calls.append(req)
            text = str(self.respond(req))
            prompt_len = self.count_tokens(req.prompt or "".join(m.content for m in req.messages or ()))
            return Completion(text=text, usage=Usage(prompt_len, 0, self.count_tokens(text), 0.0))

        return complete_with_schema(once, request)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def close(self) -> None:
        pass
