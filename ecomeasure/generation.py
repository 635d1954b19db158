"""The seed's generation, made exact: its prompt, greedy decoding forced to a fixed length,
and marks on the GPU stream at the start, at the first generated token and at the end.

The first-token mark splits each iteration into prefill (prompt processing, up to the first
token) and decode (the remaining tokens); both are windows on the meter's clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .meter import Mark
from .models import PROMPT, ModelSpec

_FALLBACK_PROMPT_TOKENS = 11  # a model of unknown tokenizer: length of PROMPT with Llama's


@dataclass(frozen=True)
class Prompt:
    """A batch of identical prompts on the model's device."""
    input_ids: Any
    attention_mask: Any
    prompt_tokens: int
    """Tokens per sequence."""
    source: str
    """``tokenizer`` (the real tokenizer) or ``estimated`` (ids of the estimated length)."""

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])


def estimated_ids(spec: ModelSpec | None, vocab_size: int, bos_token_id: int | None,
                  special_ids: set[int], seed: int) -> list[int]:
    """Token ids as many as ``PROMPT`` would give under the real tokenizer: a leading BOS
    where the tokenizer adds one, then ids drawn (fixed seed) from the middle of the
    vocabulary, away from byte, control and special tokens at either end."""
    import torch

    length = spec.prompt_tokens if spec is not None else _FALLBACK_PROMPT_TOKENS
    adds_bos = spec.prompt_adds_bos if spec is not None else bos_token_id is not None
    margin = min(1000, vocab_size // 4)
    generator = torch.Generator().manual_seed(seed)
    ids: list[int] = [bos_token_id] if adds_bos and bos_token_id is not None else []
    while len(ids) < length:
        token = int(torch.randint(margin, vocab_size - margin, (1,), generator=generator))
        if token not in special_ids:
            ids.append(token)
    return ids


def build_prompt(model: Any, tokenizer: Any, spec: ModelSpec | None, batch_size: int,
                 seed: int = 0) -> Prompt:
    """The seed's prompt, ``batch_size`` times, tokenized by ``tokenizer`` if given, else as
    ids of the estimated real length. All sequences are identical, so none is padded."""
    import torch

    if tokenizer is not None:
        encoded = tokenizer([PROMPT] * batch_size, return_tensors="pt")
        input_ids, source = encoded["input_ids"], "tokenizer"
    else:
        config, generation = model.config, model.generation_config
        special = {i for i in _as_list(generation.eos_token_id) + _as_list(config.eos_token_id)
                   + _as_list(generation.pad_token_id) + _as_list(generation.bos_token_id)}
        bos = generation.bos_token_id if generation.bos_token_id is not None else config.bos_token_id
        ids = estimated_ids(spec, config.get_text_config().vocab_size, bos, special, seed)
        input_ids, source = torch.tensor([ids] * batch_size, dtype=torch.long), "estimated"
    input_ids = input_ids.to(model.device)
    return Prompt(input_ids, torch.ones_like(input_ids), int(input_ids.shape[1]), source)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def generation_config(model: Any, new_tokens: int) -> Any:
    """Greedy decoding of exactly ``new_tokens`` tokens (``min_new_tokens`` bans EOS until
    then, so no sequence stops early; the seed's runs could stop at EOS)."""
    from transformers import GenerationConfig

    defaults = model.generation_config
    eos = defaults.eos_token_id if defaults.eos_token_id is not None else model.config.eos_token_id
    pad = defaults.pad_token_id if defaults.pad_token_id is not None else _as_list(eos)[0] if eos is not None else 0
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            num_beams=1, repetition_penalty=1.0, use_cache=True,
                            eos_token_id=eos, pad_token_id=pad, bos_token_id=defaults.bos_token_id)


class FirstTokenMark:
    """A transformers streamer that places a mark when the first generated token arrives.

    ``generate`` calls ``put`` first with the prompt, then once per generated token (after
    copying it to the host, so the GPU has produced it); the mark is placed on ``stream``
    (None: host time, for the CPU).
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.mark: Mark | None = None
        self.puts = 0

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.mark = Mark(self.stream)

    def end(self) -> None:
        pass


class GenerationLengthError(RuntimeError):
    """Generation produced another number of tokens than asked for."""


@dataclass
class Timing:
    """Marks of one generation: begin, first token, end (all on the same stream)."""
    begin: Mark
    first_token: Mark
    end: Mark
    tokens: int
    """Generated tokens, all sequences."""

    def times_ns(self, timeout_s: float = 60.0) -> tuple[int, int, int]:
        """(begin, first token, end) on the meter's clock; waits for the GPU to pass them.

        Between stream marks the GPU's own clock times the intervals (host stamps of the
        marks jitter by the callback latency); both intervals are anchored at the begin
        mark so that prefill + decode is exactly the iteration.
        """
        begin_ns, end_ns = self.begin.span_ns(self.end, timeout_s)
        anchor_ns, first_ns = self.begin.span_ns(self.first_token, timeout_s)
        first_ns = min(max(begin_ns + (first_ns - anchor_ns), begin_ns), end_ns)
        return begin_ns, first_ns, end_ns


def generate(model: Any, prompt: Prompt, new_tokens: int, stream: Any = None) -> Timing:
    """One greedy generation of exactly ``new_tokens`` tokens per sequence, with marks at its
    start, at its first generated token and at its end, placed on ``stream`` (None: host
    time). Python returns as soon as generate() does; the marks are read later."""
    import torch

    first = FirstTokenMark(stream)
    with torch.inference_mode():
        begin = Mark(stream)
        output = model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                                generation_config=generation_config(model, new_tokens), streamer=first)
        end = Mark(stream)
    per_sequence = int(output.shape[1]) - prompt.prompt_tokens
    if per_sequence != new_tokens or first.mark is None:
        raise GenerationLengthError(f"asked for {new_tokens} new tokens per sequence, got {per_sequence}")
    return Timing(begin, first.mark, end, per_sequence * prompt.batch_size)
