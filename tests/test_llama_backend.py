"""The in-process llama.cpp backend on the real embedded models."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from skillgrad_tui.core.errors import ModelError, OutputInvalid, PromptTooLong
from skillgrad_tui.core.llm.base import CancelToken, CompletionRequest, Message
from skillgrad_tui.core.llm.llama_backend import LlamaBackend
from skillgrad_tui.core.llm.prompting import GemmaTurns, PromptFormat, TemplateFormat

pytestmark = pytest.mark.model

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "year": {"type": "integer"}},
    "required": ["city", "year"],
    "additionalProperties": False,
}


def _ask(prompt: str, **kw: object) -> CompletionRequest:
    return CompletionRequest.chat(("user", prompt), **kw)  # type: ignore[arg-type]


def test_greedy_completion_is_the_same_twice_with_the_same_seed(gemma_backend: LlamaBackend) -> None:
    req = CompletionRequest(prompt="The three primary colours are", max_tokens=16, seed=7)
    a = gemma_backend.complete(req)
    gemma_backend.complete(CompletionRequest(prompt="Unrelated text to disturb the cache.", max_tokens=4))
    b = gemma_backend.complete(req)
    assert a.text == b.text and a.text.strip()
    assert a.usage.completion_tokens == b.usage.completion_tokens > 0


def test_sampling_depends_on_the_seed_and_is_reproducible(gemma_backend: LlamaBackend) -> None:
    def sample(seed: int) -> str:
        gemma_backend.reset_cache()  # same KV state each time (see reset_cache)
        return gemma_backend.complete(CompletionRequest(prompt="Once upon a time", max_tokens=12,
                                                        temperature=1.0, seed=seed)).text

    outs = {seed: sample(seed) for seed in (1, 2, 3)}
    assert sample(1) == outs[1]
    assert len(set(outs.values())) > 1


@pytest.mark.parametrize("which", ["gemma_backend", "smollm_backend"])
def test_schema_constrained_call_returns_valid_json(which: str, request: pytest.FixtureRequest) -> None:
    backend: LlamaBackend = request.getfixturevalue(which)
    c = backend.complete(_ask("Name a city and the year it was founded, as JSON.", max_tokens=48,
                              json_schema=SCHEMA))
    assert isinstance(c.json, dict) and set(c.json) == {"city", "year"}
    assert isinstance(c.json["year"], int) and isinstance(c.json["city"], str)


def test_output_that_never_validates_fails_clearly_after_bounded_retries(gemma_backend: LlamaBackend) -> None:
    # max_tokens too small for any complete object: the grammar cannot save it, the retries must stop.
    with pytest.raises(OutputInvalid) as info:
        gemma_backend.complete(_ask("JSON please", max_tokens=2, json_schema=SCHEMA, json_attempts=2))
    assert info.value.attempts == 2
    assert "JSON schema" in str(info.value)


def test_stop_strings_and_max_tokens(gemma_backend: LlamaBackend) -> None:
    c = gemma_backend.complete(CompletionRequest(prompt="1, 2, 3, 4, 5, 6,", max_tokens=30, stop=(" 9",)))
    assert " 9" not in c.text and c.finish_reason == "stop"
    c = gemma_backend.complete(CompletionRequest(prompt="Write a long story:", max_tokens=5))
    assert c.usage.completion_tokens == 5 and c.finish_reason == "length"


def test_shared_prefix_is_reused_from_the_kv_cache(gemma_backend: LlamaBackend) -> None:
    skill = "You follow this skill. " + "Read every row of the table carefully. " * 30
    first = gemma_backend.complete(CompletionRequest.chat(("system", skill), ("user", "Question one?"),
                                                          max_tokens=2))
    second = gemma_backend.complete(CompletionRequest.chat(("system", skill), ("user", "Another question?"),
                                                           max_tokens=2))
    skill_tokens = gemma_backend.count_tokens(skill)
    assert second.usage.cached_prompt_tokens >= skill_tokens
    assert second.usage.cached_prompt_tokens < second.usage.prompt_tokens
    assert first.usage.prompt_tokens > skill_tokens


def test_prompt_longer_than_the_context_says_by_how_much(gemma_path: Path) -> None:
    small = LlamaBackend(gemma_path, n_ctx=256)
    try:
        with pytest.raises(PromptTooLong) as info:
            small.complete(CompletionRequest(prompt="word " * 400, max_tokens=4))
        assert info.value.n_ctx == 256 and info.value.prompt_tokens > 256
        assert f"{info.value.prompt_tokens - 256} tokens too long" in str(info.value)
    finally:
        small.close()


def test_cancellation_stops_between_tokens(gemma_backend: LlamaBackend) -> None:
    token = CancelToken()
    timer = threading.Timer(0.3, token.cancel)
    timer.start()
    start = time.perf_counter()
    c = gemma_backend.complete(CompletionRequest(prompt="Count: 1, 2, 3,", max_tokens=4000), token)
    timer.cancel()
    assert c.finish_reason == "cancelled"
    assert 0 < c.usage.completion_tokens < 4000
    assert time.perf_counter() - start < 30


def test_prompt_formats_follow_the_gguf(gemma_backend: LlamaBackend, smollm_backend: LlamaBackend) -> None:
    assert isinstance(gemma_backend.prompt_format, GemmaTurns)  # base model: no chat template
    assert isinstance(smollm_backend.prompt_format, TemplateFormat)
    text, stops = gemma_backend.render(_ask("hi"))
    assert text.endswith("<start_of_turn>model\n") and "<end_of_turn>" in stops
    text, _ = smollm_backend.render(CompletionRequest.chat(("system", "S"), ("user", "U")))
    assert text.index("S") < text.index("U") and "<|im_start|>assistant" in text


def test_a_trailing_assistant_message_is_continued() -> None:
    msgs = [Message("system", "skill"), Message("user", "q"), Message("assistant", "Answer:")]
    for fmt in (GemmaTurns(), PromptFormat()):
        assert fmt.render(msgs).text.endswith("Answer:")
    assert GemmaTurns().render(msgs).text.startswith("<start_of_turn>user\nskill")


def test_bad_model_files_fail_in_one_line_naming_the_file(tmp_path: Path, gemma_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ModelError, match="missing.gguf: model file not found"):
        LlamaBackend(missing)
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        LlamaBackend(text)
    truncated = tmp_path / "cut.gguf"
    with gemma_path.open("rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    with pytest.raises(ModelError, match="truncated"):
        LlamaBackend(truncated)


def test_a_looping_answer_stops_early_when_asked(gemma_backend: LlamaBackend) -> None:
    prompt = "ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok"
    watched = gemma_backend.complete(CompletionRequest(prompt=prompt, max_tokens=200, stop_on_loop=True))
    assert watched.finish_reason == "loop"
    assert 64 <= watched.usage.completion_tokens < 200
    plain = gemma_backend.complete(CompletionRequest(prompt=prompt, max_tokens=100))
    assert plain.finish_reason == "length" and plain.usage.completion_tokens == 100
    assert plain.text.startswith(watched.text[:40])  # same greedy tokens until the stop


def test_fast_grammar_path_gives_llama_cpp_pythons_greedy_tokens(smollm_backend: LlamaBackend) -> None:
    """Our check-then-constrain sampler must pick what the grammar-first sampler picks."""
    import llama_cpp

    from skillgrad_tui.core.llm.constrained import GrammarStats, SamplingParams, constrained_tokens

    llm = smollm_backend._llm
    grammar = smollm_backend._grammar(SCHEMA)
    text, _ = smollm_backend.render(_ask("Name a city and the year it was founded, as JSON."))
    prompt = smollm_backend.tokenize_prompt(text)

    def take(stream: Any) -> list[int]:
        out: list[int] = []
        for token in stream:
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            out.append(token)
            if len(out) >= 40:
                break
        stream.close()
        return out

    smollm_backend.reset_cache()
    theirs = take(llm.generate(prompt, top_k=40, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                               grammar=grammar))
    smollm_backend.reset_cache()
    stats = GrammarStats()
    ours = take(constrained_tokens(llm, prompt, grammar, SamplingParams(0.0, 40, 1.0, 0), stats))
    smollm_backend.reset_cache()
    assert ours == theirs and len(ours) > 5
    assert stats.rejected < stats.tokens  # most tokens needed only the one-token check


def test_long_string_bounds_are_left_to_validation_not_the_grammar(smollm_backend: LlamaBackend) -> None:
    from skillgrad_tui.core.llm.llama_backend import grammar_schema
    from skillgrad_tui.core.reflection import SCHEMA as REFLECTION

    relaxed = grammar_schema(REFLECTION)
    assert "maxLength" not in relaxed["properties"]["body"] and REFLECTION["properties"]["body"]["maxLength"] == 4000
    assert grammar_schema(SCHEMA) == SCHEMA  # short bounds stay in the grammar
    # The reflection schema (4000-character body) used to be refused by llama.cpp's grammar parser.
    assert smollm_backend._grammar(REFLECTION) is not None
    c = smollm_backend.complete(_ask("Write a rule for reading tables, as JSON with a body.", max_tokens=80,
                                     json_schema={"type": "object", "properties": {"body": {
                                         "type": "string", "minLength": 1, "maxLength": 200}},
                                         "required": ["body"], "additionalProperties": False}))
    assert isinstance(c.json, dict) and 1 <= len(c.json["body"]) <= 200


def test_choices_with_quotes_and_backslashes_still_constrain_the_answer(smollm_backend: LlamaBackend) -> None:
    """llama-cpp-python's converter left backslashes unescaped, so a choice holding a double quote
    made a grammar llama.cpp could not parse, and the model then ran with no grammar at all."""
    from skillgrad_tui.core.llm.llama_backend import schema_grammar

    choices = ['- Ignore summary rows such as "Total".', "C:\\tables\\x.csv", "plain"]
    schema = {"type": "object", "properties": {"line": {"enum": choices}}, "required": ["line"],
              "additionalProperties": False}
    assert '\\\\\\"Total\\\\\\"' in schema_grammar(json.dumps(schema))  # \" inside the JSON, escaped for GBNF
    for first in choices:  # whichever comes first, the answer is one of them, spelled exactly
        c = smollm_backend.complete(_ask("Which rule matters most? Answer in JSON.", max_tokens=40,
                                         json_schema={**schema, "properties": {"line": {"enum": [
                                             first, *[x for x in choices if x != first]]}}}))
        assert isinstance(c.json, dict) and c.json["line"] in choices
