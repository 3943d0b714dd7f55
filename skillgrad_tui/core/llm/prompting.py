"""Turn chat messages into the exact prompt text a local model sees.

A model whose GGUF carries a chat template gets it (rendered with llama-cpp-python's Jinja2
formatter). Gemma 3 270M base has none, so it gets Gemma's turn markers; any other model without
a template gets a plain "System:/User:/Assistant:" completion layout. In every case the messages are
rendered in order with nothing request-specific before them, so a skill placed in the first
message is a prefix that consecutive prompts share and llama.cpp evaluates once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

from skillgrad_tui.core.llm.base import Message

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stop: tuple[str, ...]  # stop strings the format implies (end-of-turn markers)


class PromptFormat:
    """A trailing assistant message is a prefix the model continues (e.g. "Answer:")."""

    name = "plain"

    def render(self, messages: Sequence[Message]) -> RenderedPrompt:
        if messages and messages[-1].role == "assistant":
            opened = self.render_turns(messages[:-1])
            return RenderedPrompt(opened.text + messages[-1].content, opened.stop)
        return self.render_turns(messages)

    def render_turns(self, messages: Sequence[Message]) -> RenderedPrompt:
        parts = []
        for m in messages:
            label = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}[m.role]
            parts.append(f"{label}: {m.content.strip()}\n\n")
        parts.append("Assistant:")
        return RenderedPrompt("".join(parts), ("\nUser:", "\nSystem:"))


class GemmaTurns(PromptFormat):
    """Gemma's turn markers; Gemma has no system role, so system text opens the first user turn."""

    name = "gemma-turns"

    def render_turns(self, messages: Sequence[Message]) -> RenderedPrompt:
        out: list[str] = []
        pending_system = ""
        for m in messages:
            if m.role == "system":
                pending_system += m.content.strip() + "\n\n"
                continue
            role = "model" if m.role == "assistant" else "user"
            content = m.content.strip()
            if role == "user" and pending_system:
                content, pending_system = pending_system + content, ""
            out.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
        if pending_system:
            out.append(f"<start_of_turn>user\n{pending_system.strip()}<end_of_turn>\n")
        out.append("<start_of_turn>model\n")
        return RenderedPrompt("".join(out), ("<end_of_turn>", "<start_of_turn>"))


class TemplateFormat(PromptFormat):
    """The model's own Jinja2 chat template from its GGUF metadata."""

    name = "gguf-template"

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token,
                                              bos_token=bos_token, add_generation_prompt=True)
        self._eos = eos_token

    def render_turns(self, messages: Sequence[Message]) -> RenderedPrompt:
        result = self._formatter(messages=[_template_message(m) for m in messages])
        stops = result.stop if isinstance(result.stop, list) else ([result.stop] if result.stop else [])
        return RenderedPrompt(result.prompt, tuple(s for s in [*stops, self._eos] if s))


def _template_message(message: Message) -> ChatCompletionRequestMessage:
    # llama-cpp-python types a message per role (a tool message needs a call id); the chat template
    # reads only role and content, which is all a Message has.
    return cast("ChatCompletionRequestMessage", {"role": message.role, "content": message.content})


def choose_format(chat_template: str | None, architecture: str | None, has_gemma_markers: bool,
                  bos_token: str = "", eos_token: str = "") -> PromptFormat:
    if chat_template:
        return TemplateFormat(chat_template, bos_token, eos_token)
    if has_gemma_markers or (architecture or "").startswith("gemma"):
        return GemmaTurns()
    return PromptFormat()
