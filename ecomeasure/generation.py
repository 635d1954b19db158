"""The seed's generation, made exact: its prompt, greedy decoding forced to a fixed length,
and marks on the GPU stream at the start, at the first generated token and at the end.

Two decode regimes produce the same tokens:

- ``eager``: the seed's ``model.generate`` (dynamic KV cache, one Python pass per token). At
  batch size 1 it is bound by the host's Python: the GPU waits for the next launch.
- ``graph``: a static KV cache and the per-token step captured once in a CUDA graph and
  replayed, so the host only queues replays and the GPU runs back to back
  (``StaticDecoder``). On the CPU the same static-cache step runs uncaptured.
- ``compiled``: as ``graph``, with the step's forward pass compiled by ``torch.compile``
  first (fused kernels; about a minute of compilation per configuration on a 7B model).

The first-token mark splits each iteration into prefill (prompt processing, up to the first
token) and decode (the remaining tokens); both are windows on the meter's clock.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from .errors import summarize
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
    token_ids: Any = None
    """The generated ids, ``[batch, new_tokens]``, on the model's device (read them only
    after the measurement: copying them to the host waits for the GPU)."""

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
    return Timing(begin, first.mark, end, per_sequence * prompt.batch_size, output[:, prompt.prompt_tokens:])


REGIMES: tuple[str, ...] = ("eager", "graph", "compiled")
"""Decode regimes: ``eager`` (``model.generate``), ``graph`` and ``compiled``
(``StaticDecoder`` without and with ``torch.compile``)."""


COMPILE_OPTIONS: dict[str, Any] = {"max_autotune": True, "coordinate_descent_tuning": True}
"""Inductor options of the ``compiled`` regime (``torch.compile(..., options=...)``): each
matmul shape takes the fastest of cuBLAS and inductor's own kernels, measured at compile
time, and generated kernels tune their block sizes. Inductor's own CUDA graphs stay off (the
decoder captures the step itself)."""


class GraphUnavailableError(RuntimeError):
    """The decode step of this model cannot be compiled or captured in a CUDA graph (or its
    replay does not reproduce the uncaptured step); the message says why."""


def banned_token_ids(model: Any) -> list[int]:
    """Ids that forced-length greedy decoding never picks: the EOS ids, as ``generate``
    bans them while ``min_new_tokens`` is not reached."""
    eos = generation_config(model, 1).eos_token_id
    return sorted(set(_as_list(eos)))


class StaticDecoder:
    """Greedy decoding of a fixed number of tokens over a static KV cache, with the
    per-token step captured in a CUDA graph.

    The step reads the current token and its position from fixed tensors and writes the
    next token back into them, so a replay needs nothing from the host: the host queues
    ``new_tokens - 1`` replays and never waits for the GPU. The prompt (prefill) is captured
    in a graph of its own (``_capture`` says when it runs uncaptured). ``capture=False`` runs
    the same step without a graph (the CPU, or to check a capture); ``compile=True`` compiles
    the step's forward pass (``torch.compile``, static shapes) before it is captured.

    Construct it once per (model, prompt); ``generate`` may then run any number of times for
    up to ``max_new_tokens`` tokens.
    """

    def __init__(self, model: Any, prompt: Prompt, max_new_tokens: int, *, capture: bool = True,
                 compile: bool = False, compile_options: dict[str, Any] | None = None) -> None:
        import torch

        self.model, self.prompt = model, prompt
        self.max_new_tokens = max_new_tokens
        device = prompt.input_ids.device
        batch = prompt.batch_size
        self.cache = static_cache(model.config, prompt.prompt_tokens + max_new_tokens)
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); pass whichever it takes.
        self._cache_argument = ("cache" if "cache" in inspect.signature(model.forward).parameters
                                else "past_key_values")
        self._banned = torch.tensor(banned_token_ids(model), dtype=torch.long, device=device)
        self._prefill_positions = torch.arange(prompt.prompt_tokens, device=device)
        # The step's fixed inputs and outputs (a CUDA graph replays on fixed addresses).
        self._token = torch.zeros((batch, 1), dtype=torch.long, device=device)
        self._position = torch.zeros((1,), dtype=torch.long, device=device)
        self._out = torch.zeros((batch, max_new_tokens), dtype=torch.long, device=device)
        self._first_column = prompt.prompt_tokens - 1  # position of the token that made out[:, 0]
        self.graph: Any = None
        self.prefill_graph: Any = None
        self.notes: list[str] = []
        """What a row measured with this decoder should say (the prefill left uncaptured)."""
        options = COMPILE_OPTIONS if compile_options is None else compile_options
        self._forward = torch.compile(model.forward, dynamic=False, options=options) if compile else model.forward
        self.compiled = compile
        if capture:
            # Streams, graphs and the libraries' handles belong to the current device: make it
            # the model's (a rank generating on cuda:1 while cuda:0 is current cannot capture).
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                self._capture()

    # the computation --------------------------------------------------------------------
    def _pick(self, logits: Any) -> Any:
        """Greedy choice from the last position's logits, EOS banned (as ``generate`` does
        under ``min_new_tokens``); in float32, as ``generate`` compares them."""
        import torch
        scores = logits[:, -1, :].float()
        if self._banned.numel():
            scores.index_fill_(-1, self._banned, -torch.inf)
        return scores.argmax(dim=-1, keepdim=True)

    def _prefill(self) -> None:
        self.cache.reset()  # in place: the captured step keeps its addresses
        logits = self.model(input_ids=self.prompt.input_ids, cache_position=self._prefill_positions,
                            use_cache=True, logits_to_keep=1, **{self._cache_argument: self.cache}).logits
        first = self._pick(logits)
        self._token.copy_(first)
        self._out[:, :1].copy_(first)
        self._position.fill_(self.prompt.prompt_tokens)

    def _step(self) -> None:
        """One token: from ``_token`` at ``_position`` to the next token, written into
        ``_token`` and into column ``position - prompt + 1`` of ``_out``."""
        logits = self._forward(input_ids=self._token, cache_position=self._position, use_cache=True,
                               **{self._cache_argument: self.cache}).logits
        nxt = self._pick(logits)
        self._out.index_copy_(1, self._position - self._first_column, nxt)
        self._token.copy_(nxt)
        self._position.add_(1)

    # capture ------------------------------------------------------------------------------
    def _capture(self) -> None:
        """Warm up, capture the prefill and the step, and check the graphs before use.

        The step graph must reproduce the uncaptured step exactly, from the same prefill: a
        kernel reading host state, or one that allocates, would be captured with stale values
        and replay wrong tokens. The prefill is one fixed computation (same prompt, same
        positions, the cache reset inside it), so its graph can hold no stale state; but its
        kernels may round differently from the uncaptured prefill's (measured: cuDNN
        attention and cuBLAS under capture), and with near ties the greedy tokens then part.
        So the prefill graph must give the uncaptured prefill's first token, and where the
        tokens part later, the row says from which token. A prefill that cannot be captured,
        or gives another first token, runs uncaptured (noted); a step that cannot be
        captured, or replays other tokens, makes the regime unavailable."""
        import torch

        steps = min(self.max_new_tokens, 8) - 1
        try:
            self._warm_up()
        except Exception as exc:  # noqa: BLE001 - the reason is recorded
            what = "compiling the step failed" if self.compiled else "warming up for capture failed"
            raise GraphUnavailableError(f"{what}: {summarize(exc)}") from None
        try:
            prefill_graph = _captured(self._prefill)
        except Exception as exc:  # noqa: BLE001 - the prefill's host work is then measured too
            prefill_graph = None
            self.notes.append(f"prefill uncaptured: {summarize(exc)}")
        try:
            with torch.inference_mode():
                self._prefill()
            graph = _captured(self._step)
        except Exception as exc:  # noqa: BLE001 - any failure to capture is the reason recorded
            raise GraphUnavailableError(f"capture failed: {summarize(exc)}") from None
        with torch.inference_mode():
            reference = uncaptured = self._decode_ids(steps)
            if prefill_graph is not None:
                self.prefill_graph = prefill_graph
                from_graph = self._decode_ids(steps)  # the captured prefill, uncaptured steps
                if not torch.equal(from_graph[:, 0], uncaptured[:, 0]):
                    self.prefill_graph = None
                    self.notes.append("prefill uncaptured: its graph gave another first token")
                else:
                    reference = from_graph
                    if not torch.equal(from_graph, uncaptured):
                        self.notes.append("captured prefill: greedy tokens part from the uncaptured prefill's "
                                          f"at token {first_difference(uncaptured, from_graph)}")
            self.graph = graph
            captured = self._decode_ids(steps)
        if not torch.equal(reference, captured):
            self.graph = self.prefill_graph = None
            raise GraphUnavailableError("replays differ from the uncaptured step at token "
                                        f"{first_difference(reference, captured)}")

    def _warm_up(self) -> None:
        """The prefill and a few steps on a side stream (lazy initialisations, library handles,
        compilation), as capture requires."""
        import torch

        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._prefill()
                for _ in range(3):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()

    def _decode_ids(self, steps: int) -> Any:
        self._start()
        for _ in range(steps):
            self._advance()
        return self._out[:, :steps + 1].clone().cpu()

    def _start(self) -> None:
        if self.prefill_graph is not None:
            self.prefill_graph.replay()
        else:
            self._prefill()

    def _advance(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()

    # generation ---------------------------------------------------------------------------
    def generate(self, new_tokens: int, stream: Any = None) -> Timing:
        """``new_tokens`` greedy tokens per sequence of the prompt, with marks at the start,
        at the first token (after the prefill) and at the end, on ``stream``. Returns as
        soon as the work is queued."""
        import torch

        if not 1 <= new_tokens <= self.max_new_tokens:
            raise ValueError(f"new_tokens must be 1..{self.max_new_tokens}, not {new_tokens}")
        with torch.inference_mode():
            begin = Mark(stream)
            self._start()
            first = Mark(stream)
            for _ in range(new_tokens - 1):
                self._advance()
            end = Mark(stream)
        return Timing(begin, first, end, new_tokens * self.prompt.batch_size, self._out[:, :new_tokens])


def first_difference(a: Any, b: Any) -> int | None:
    """The first token column in which two ``[batch, tokens]`` id tensors differ; None if none."""
    differs = (a != b).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else None


def _captured(work: Callable[[], None]) -> Any:
    """``work`` captured in a CUDA graph (its own memory pool) on the current device."""
    import torch

    try:
        with torch.inference_mode():
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                work()
            torch.cuda.synchronize()
    except Exception:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # let queued work finish before the reason is recorded
        raise
    return graph


def static_cache(config: Any, length: int) -> Any:
    """A static KV cache of ``length`` positions for ``config``'s model.

    Where every sliding window is at least ``length`` long, no position ever leaves a window,
    so the sliding layers are made plain static layers: the same attention, without the
    position counter that transformers' sliding static layer keeps in a host int (a CUDA
    graph would replay that counter's value at capture)."""
    from transformers import StaticCache

    cache = StaticCache(config=config, max_cache_len=length)
    windows = {w for c in _text_configs(config) if (w := getattr(c, "sliding_window", None)) is not None}
    if windows and min(windows) >= length:
        from transformers.cache_utils import StaticLayer

        cache.layers = [StaticLayer(max_cache_len=length) if getattr(layer, "is_sliding", False) else layer
                        for layer in cache.layers]
    return cache


def _text_configs(config: Any) -> list[Any]:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return [text, *(getattr(text, "per_layer_config", None) or [])]

