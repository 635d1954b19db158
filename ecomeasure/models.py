"""The seed study's models: short aliases, HuggingFace ids and exact architectures.

Each entry holds the values of the model's published ``config.json`` that shape its compute
(layers, widths, heads, vocabulary, rope), so that the benchmark can build the exact
architecture with random weights when the real checkpoint cannot be had. Any other HF id or
local path is accepted by the benchmark too; it then needs the real checkpoint.

Sources: the values were read from each repository's ``config.json`` on the HuggingFace hub
(as recorded in public projects that quote them; see the comment on each entry) and checked
against parameter counts: ``parameter_count`` builds each architecture on the meta device.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and transformers are imported lazily: ``--help`` must stay fast
    from transformers import PretrainedConfig

PROMPT = "Explain the concept of energy efficiency in computing:"
"""The seed study's prompt (dataset memo, "Measurement Protocol")."""


@dataclass(frozen=True)
class ModelSpec:
    """One model: its alias, HF id and the architecture values of its ``config.json``.

    ``prompt_tokens`` is the length of ``PROMPT`` under the model's real tokenizer
    (``tokenizer(PROMPT)``, as the seed called it), used only when no tokenizer is at hand;
    ``prompt_adds_bos`` says whether that length counts a leading BOS token.
    """
    alias: str
    hf_id: str | None
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int
    pad_token_id: int | None
    prompt_tokens: int
    prompt_adds_bos: bool
    extra: tuple[tuple[str, Any], ...] = ()
    """Further config.json values (sliding window and the like)."""
    test_architecture: bool = False
    """Not a published model: a small architecture for tests and CPU smoke runs (random
    weights only); listed after the seed's models and marked as a test architecture."""
    aliases: tuple[str, ...] = field(default=())

    def config_values(self) -> dict[str, Any]:
        """The keyword arguments of the model's transformers config class."""
        values: dict[str, Any] = dict(
            hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings, rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps, tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id, hidden_act="silu")
        values.update(self.extra)
        return values

    def build_config(self) -> PretrainedConfig:
        """The transformers config of this architecture (no download)."""
        from transformers import AutoConfig
        return AutoConfig.for_model(self.model_type, **self.config_values())

    @property
    def name(self) -> str:
        return self.alias


# Prompt lengths: the seed tokenized the bare prompt (no chat template). Sentencepiece
# tokenizers of the Llama family add BOS and split the prompt into 10 pieces ("Exp|lain"
# or "Explain" varies by vocabulary: TinyLlama/Mistral/Phi-3 give 10-11 with BOS); Qwen's
# byte-level BPE adds no BOS and gives 9. These are estimates, marked as such in results.
_MODELS: tuple[ModelSpec, ...] = (
    # TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json (LlamaForCausalLM, GQA 32/4).
    ModelSpec("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama",
              hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
              num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
              max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None,
              prompt_tokens=11, prompt_adds_bos=True),
    # Qwen/Qwen2-1.5B-Instruct config.json (Qwen2ForCausalLM, tied embeddings).
    ModelSpec("qwen2-1.5b", "Qwen/Qwen2-1.5B-Instruct", "qwen2",
              hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
              num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
              pad_token_id=None, prompt_tokens=9, prompt_adds_bos=False,
              extra=(("use_sliding_window", False),)),
    # Qwen/Qwen2.5-3B-Instruct config.json (Qwen2ForCausalLM, tied embeddings).
    ModelSpec("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct", "qwen2",
              hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
              num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
              pad_token_id=None, prompt_tokens=9, prompt_adds_bos=False,
              extra=(("use_sliding_window", False),)),
    # Qwen/Qwen2-7B-Instruct config.json (Qwen2ForCausalLM).
    ModelSpec("qwen2-7b", "Qwen/Qwen2-7B-Instruct", "qwen2",
              hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
              num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151645,
              pad_token_id=None, prompt_tokens=9, prompt_adds_bos=False,
              extra=(("use_sliding_window", False),)),
    # 01-ai/Yi-1.5-6B-Chat config.json (LlamaForCausalLM, GQA 32/4, rope 5e6).
    ModelSpec("yi-1.5-6b", "01-ai/Yi-1.5-6B-Chat", "llama",
              hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=4, vocab_size=64000,
              max_position_embeddings=4096, rope_theta=5000000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              prompt_tokens=10, prompt_adds_bos=False),
    # mistralai/Mistral-7B-Instruct-v0.3 config.json (MistralForCausalLM, vocab 32768,
    # no sliding window in v0.3).
    ModelSpec("mistral", "mistralai/Mistral-7B-Instruct-v0.3", "mistral",
              hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=8, vocab_size=32768,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-5,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None,
              prompt_tokens=11, prompt_adds_bos=True, extra=(("sliding_window", None),),
              aliases=("mistral-7b",)),
    # microsoft/Phi-3-mini-4k-instruct config.json (Phi3ForCausalLM, MHA 32/32).
    ModelSpec("phi3-mini", "microsoft/Phi-3-mini-4k-instruct", "phi3",
              hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
              max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=32000,
              pad_token_id=32000, prompt_tokens=11, prompt_adds_bos=True,
              extra=(("sliding_window", 2047), ("original_max_position_embeddings", 4096),
                     ("resid_pdrop", 0.0), ("embd_pdrop", 0.0), ("attention_dropout", 0.0))),
    # Qwen/Qwen2.5-7B-Instruct config.json (Qwen2ForCausalLM).
    ModelSpec("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", "qwen2",
              hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
              num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
              tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151645,
              pad_token_id=None, prompt_tokens=9, prompt_adds_bos=False,
              extra=(("use_sliding_window", False),)),
    # Not a real model: a 2-layer Llama for tests and smoke runs (seconds on a CPU).
    ModelSpec("tiny-llama-test", None, "llama",
              hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
              max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None,
              prompt_tokens=11, prompt_adds_bos=True, test_architecture=True),
)

MODELS: dict[str, ModelSpec] = {m.alias: m for m in _MODELS}
"""Every registered model by alias (the test architectures included)."""

_BY_NAME: dict[str, ModelSpec] = {
    **{m.alias: m for m in _MODELS},
    **{a: m for m in _MODELS for a in m.aliases},
    **{m.hf_id.lower(): m for m in _MODELS if m.hf_id},
}


TEST_MARK = " (a test architecture)"
"""How lists of models mark a test architecture."""


def listed_models() -> list[ModelSpec]:
    """Every registered model: the seed's, in the seed's order, then the test architectures."""
    return sorted(_MODELS, key=lambda m: m.test_architecture)


def valid_names() -> list[str]:
    """Every alias a user may type, as error messages list them: a test architecture's alias
    carries :data:`TEST_MARK`."""
    return [n + (TEST_MARK if m.test_architecture else "") for m in listed_models() for n in (m.alias, *m.aliases)]


class UnknownModelError(ValueError):
    """A model name that is neither an alias, an HF id nor a local path."""


def lookup(name: str) -> ModelSpec | None:
    """The registered model called ``name`` (alias or HF id, any case), or None."""
    return _BY_NAME.get(name.lower())


def check_model_name(name: str) -> str:
    """``name`` if the benchmark can try it: an alias, an ``org/name`` HF id or a local path."""
    if lookup(name) is not None or os.path.isdir(name):
        return name
    if "/" in name and not name.startswith(("/", ".")) and name.count("/") == 1:
        return name  # an HF id: checked when its weights are resolved
    raise UnknownModelError(
        f"unknown model {name!r}: use one of {', '.join(valid_names())}, "
        "a HuggingFace id (org/name) or a local checkpoint directory")


def parameter_count(config: PretrainedConfig) -> int:
    """Parameters of the architecture ``config`` describes, counted on the meta device
    (no memory is allocated; tied weights are counted once)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@functools.cache
def spec_parameter_count(alias: str) -> int:
    """``parameter_count`` of a registered model, cached."""
    return parameter_count(MODELS[alias].build_config())
