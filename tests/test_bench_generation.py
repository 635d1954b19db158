"""Weights (real or random), the prompt and forced-length greedy generation, on the 2-layer
test architecture."""
import json
import shutil

import pytest
import torch

from ecomeasure import generation, models, weights
from ecomeasure.bench.sweep import is_out_of_memory
from ecomeasure.models import PROMPT

SPEC = models.MODELS["tiny-llama-test"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return weights.resolve("tiny-llama-test", weights_dir=tmp_path_factory.mktemp("weights"), device="cpu", seed=0)


@pytest.fixture(scope="module")
def model(checkpoint):
    return weights.load_model(checkpoint, "fp16", "cpu")


def test_random_checkpoint_is_complete_and_reused(checkpoint):
    assert checkpoint.kind == "random" and checkpoint.spec is SPEC
    assert (checkpoint.path / "model.safetensors").is_file()
    marker = json.loads((checkpoint.path / weights.MARKER).read_text())
    assert marker["complete"] is True and marker["seed"] == 0
    stamp = (checkpoint.path / "model.safetensors").stat().st_mtime_ns
    again = weights.resolve("tiny-llama-test", weights_dir=checkpoint.path.parent, device="cpu", seed=0)
    assert again.path == checkpoint.path and again.kind == "random"
    assert (checkpoint.path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt


def test_a_checkpoint_made_by_a_peer_meanwhile_is_waited_for_and_kept(tmp_path):
    """Two ranks that need the same random weights at once: the second waits on the lock
    beside the checkpoint and then finds it complete, instead of replacing it while the
    first loads it."""
    import threading

    from filelock import FileLock

    dest = tmp_path / "tiny-llama-test"
    config = SPEC.build_config()
    done = threading.Event()
    with FileLock(tmp_path / ".tiny-llama-test.lock"):  # the peer's turn
        waiter = threading.Thread(target=lambda: (weights.create_random_checkpoint(config, dest, device="cpu", seed=0),
                                                  done.set()))
        waiter.start()
        assert not done.wait(1.0) and not dest.exists()  # it waits for the peer
        weights._save_random_checkpoint(SPEC.build_config(), dest, weights._fingerprint(config.to_dict(), 0),
                                        device="cpu", seed=0, generation=None)
        made = (dest / "model.safetensors").stat()
    waiter.join(60)
    assert done.is_set()
    kept = (dest / "model.safetensors").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)  # found complete, not made again
    assert not list(tmp_path.glob(".tiny-llama-test.tmp-*"))


@pytest.mark.parametrize("tied", [False, True])
def test_saved_random_weights_load_back_exactly(tmp_path, tied):
    """The checkpoint's file holds every tensor (a tied embedding once) and from_pretrained
    finds nothing missing or unexpected: the loaded model is the one that was saved."""
    from transformers import AutoModelForCausalLM

    config = SPEC.build_config()
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    assert (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()) == tied
    model.config.save_pretrained(tmp_path)
    weights._save_weights(model, tmp_path / "model.safetensors")
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float16, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    original, back = model.state_dict(), loaded.state_dict()
    assert list(original) == list(back)
    assert all(torch.equal(original[k], back[k]) for k in original)


def test_loaded_through_from_pretrained_with_the_exact_architecture(model):
    assert model.dtype == torch.float16
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == (2, 64, 4, 2, 512)
    assert sum(p.numel() for p in model.parameters()) == models.spec_parameter_count("tiny-llama-test")


def test_incomplete_or_other_seed_checkpoints_are_rebuilt(tmp_path):
    first = weights.resolve("tiny-llama-test", weights_dir=tmp_path, device="cpu", seed=0)
    (first.path / weights.MARKER).unlink()  # as if the save had been interrupted
    assert not weights.is_complete(first.path)
    rebuilt = weights.resolve("tiny-llama-test", weights_dir=tmp_path, device="cpu", seed=0)
    assert weights.is_complete(rebuilt.path)
    before = weights.load_model(rebuilt, "fp16", "cpu").state_dict()["lm_head.weight"].clone()
    other = weights.resolve("tiny-llama-test", weights_dir=tmp_path, device="cpu", seed=1)
    after = weights.load_model(other, "fp16", "cpu").state_dict()["lm_head.weight"]
    assert not torch.equal(before, after)


def test_an_interrupted_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    def save(model, path):
        path.write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(weights, "_save_weights", save)
    with pytest.raises(KeyboardInterrupt):
        weights.resolve("tiny-llama-test", weights_dir=tmp_path, device="cpu", seed=0)
    assert [p.name for p in tmp_path.iterdir()] == [".tiny-llama-test.lock"]  # the lock's file stays, empty


def test_registered_model_without_weights_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # An empty HF cache, whatever this machine has cached.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, why = weights.find_real_weights("mistralai/Mistral-7B-Instruct-v0.3", allow_download=True)
    assert path is None and "HF_HUB_OFFLINE" in why
    with pytest.raises(weights.WeightsUnavailableError, match="no real checkpoint"):
        weights.resolve("mistral", weights_dir=tmp_path, mode="real")
    with pytest.raises(weights.WeightsUnavailableError, match="architecture is unknown"):
        weights.resolve("nobody/no-such-model", weights_dir=tmp_path)


def _save_word_tokenizer(path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: 10 + i for i, w in enumerate(PROMPT.split())}}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(path)


def test_local_checkpoint_is_real_and_its_tokenizer_is_used(checkpoint, tmp_path):
    local = tmp_path / "my-model"
    shutil.copytree(checkpoint.path, local)
    _save_word_tokenizer(local)
    resolved = weights.resolve(str(local), weights_dir=tmp_path / "unused")
    assert resolved.kind == "real" and resolved.path == local and resolved.note == "local checkpoint"
    model = weights.load_model(resolved, "bf16", "cpu")
    tokenizer = weights.load_tokenizer(resolved)
    prompt = generation.build_prompt(model, tokenizer, None, batch_size=3)
    assert prompt.source == "tokenizer" and prompt.prompt_tokens == len(PROMPT.split())
    assert prompt.input_ids.shape == (3, prompt.prompt_tokens)
    assert not (tmp_path / "unused").exists()


def test_estimated_prompt(model):
    prompt = generation.build_prompt(model, None, SPEC, batch_size=4, seed=0)
    assert prompt.source == "estimated" and prompt.prompt_tokens == SPEC.prompt_tokens
    ids = prompt.input_ids
    assert ids.shape == (4, SPEC.prompt_tokens) and bool((ids == ids[0]).all())
    assert int(ids[0, 0]) == SPEC.bos_token_id  # Llama's tokenizer adds BOS
    body = ids[0, 1:].tolist()
    assert not {SPEC.bos_token_id, SPEC.eos_token_id} & set(body)
    assert all(128 <= i < 384 for i in body)  # away from either end of the vocabulary
    again = generation.build_prompt(model, None, SPEC, batch_size=1, seed=0)
    assert torch.equal(again.input_ids[0], ids[0])
    assert bool(prompt.attention_mask.all())


def test_generation_has_the_exact_length_even_when_eos_wins(checkpoint):
    model = weights.load_model(checkpoint, "fp16", "cpu")

    def eos_wins(module, inputs, logits):  # make EOS the greedy choice at every step
        logits = logits.clone()
        logits[..., SPEC.eos_token_id] = 1e4
        return logits
    model.lm_head.register_forward_hook(eos_wins)
    prompt = generation.build_prompt(model, None, SPEC, batch_size=2)
    plain = model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask, max_new_tokens=8,
                           do_sample=False, pad_token_id=SPEC.eos_token_id)
    assert plain.shape[1] - prompt.prompt_tokens < 8  # unforced, it stops at EOS
    timing = generation.generate(model, prompt, 8)
    assert timing.tokens == 16
    begin, first, end = timing.times_ns()
    assert begin < first < end


def test_generation_windows(model):
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    timing = generation.generate(model, prompt, 5)
    assert timing.tokens == 5
    assert not timing.begin.on_stream  # the CPU: host-time marks


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(ValueError("bad shape"))


@pytest.mark.parametrize("quant", ["fp16", "bf16"])
def test_the_static_decoder_generates_the_same_tokens_as_generate(checkpoint, quant):
    # The graph regime's step (here uncaptured: the CPU has no CUDA graphs) must decode
    # exactly what model.generate does, batch rows too, and again after a shorter run.
    model = weights.load_model(checkpoint, quant, "cpu")
    prompt = generation.build_prompt(model, None, SPEC, batch_size=3)
    eager = generation.generate(model, prompt, 16).token_ids
    decoder = generation.StaticDecoder(model, prompt, 16, capture=False)
    assert decoder.generate(5).token_ids.tolist() == eager[:, :5].tolist()  # the cache is reset in place
    timing = decoder.generate(16)
    assert timing.tokens == 16 * 3 and timing.token_ids.tolist() == eager.tolist()
    assert timing.begin.time_ns() <= timing.first_token.time_ns() <= timing.end.time_ns()
    with pytest.raises(ValueError, match="new_tokens must be 1..16"):
        decoder.generate(17)


@pytest.mark.slow
def test_the_compiled_step_generates_the_same_tokens(checkpoint):
    # torch.compile of the step (the compiled regime; ~20 s of compilation on a CPU).
    model = weights.load_model(checkpoint, "bf16", "cpu")
    prompt = generation.build_prompt(model, None, SPEC, batch_size=2)
    eager = generation.generate(model, prompt, 12).token_ids
    decoder = generation.StaticDecoder(model, prompt, 12, capture=False, compile=True)
    assert decoder.generate(12).token_ids.tolist() == eager.tolist()


def test_forced_length_decoding_never_picks_eos(checkpoint):
    # Both regimes ban EOS until the forced length: with EOS made the likeliest token, the
    # static decoder must still not pick it (generate does the same under min_new_tokens).
    model = weights.load_model(checkpoint, "fp16", "cpu")
    banned = generation.banned_token_ids(model)
    assert banned
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    with torch.no_grad():
        # Point EOS's output row along the prompt's last hidden state: unbanned, it wins.
        hidden = model.model(input_ids=prompt.input_ids).last_hidden_state[0, -1].float()
        model.lm_head.weight[banned[0]] = (100 * torch.sign(hidden)).to(model.lm_head.weight.dtype)
        assert int(model(input_ids=prompt.input_ids).logits[0, -1].argmax()) == banned[0]
    ids = generation.StaticDecoder(model, prompt, 8, capture=False).generate(8).token_ids
    assert banned[0] not in ids.flatten().tolist()
    assert generation.generate(model, prompt, 8).token_ids.tolist() == ids.tolist()


def tiny_phi3(sliding_window: int):
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                        sliding_window=sliding_window, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return Phi3ForCausalLM(config).eval()


def test_a_sliding_window_longer_than_the_cache_becomes_plain_static_layers():
    # phi3-mini's window (2047) is longer than any run's cache: its sliding layers keep their
    # length in a host int, which a CUDA graph would freeze, so plain static layers replace them.
    model = tiny_phi3(sliding_window=32)
    long_enough = generation.static_cache(model.config, 32)
    assert long_enough.is_sliding == [False, False]
    too_short = generation.static_cache(model.config, 33)  # positions would leave the window
    assert too_short.is_sliding == [True, True]


def test_the_static_decoder_of_a_sliding_window_model_generates_what_generate_does():
    model = tiny_phi3(sliding_window=32)
    prompt = generation.build_prompt(model, None, None, batch_size=2)
    eager = generation.generate(model, prompt, 12).token_ids
    decoder = generation.StaticDecoder(model, prompt, 12, capture=False)
    assert decoder.cache.is_sliding == [False, False]
    assert decoder.generate(12).token_ids.tolist() == eager.tolist()


class ReplayOf:
    """A stand-in for a captured CUDA graph (the CPU has none): replay runs the work, then
    ``after`` (a replay that goes wrong)."""

    def __init__(self, work, after=None):
        self.work, self.after = work, after

    def replay(self):
        self.work()
        if self.after is not None:
            self.after()


def capture_with(monkeypatch, prefill: str = "", wrong_step: bool = False):
    """Capture on the CPU: warm-up runs plainly; the prefill's replay can leave another next
    token behind (``prefill="later"``: its first token right, the tokens part after it, as
    rounding does) or pick another first token (``"first"``), and the step's replay can pick
    another token than the uncaptured computation."""
    def captured(work):
        decoder = work.__self__

        def after():
            if work.__name__ == "_prefill":
                if prefill == "first":
                    decoder._out[:, 0].add_(1)
                if prefill:
                    decoder._token.add_(1)
            elif wrong_step:
                decoder._token.add_(1)
        return ReplayOf(work, after)
    monkeypatch.setattr(generation, "_captured", captured)
    monkeypatch.setattr(generation.StaticDecoder, "_warm_up", lambda self: None)


def test_a_prefill_graph_with_another_first_token_runs_uncaptured(model, monkeypatch):
    capture_with(monkeypatch, prefill="first")
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    eager = generation.generate(model, prompt, 10).token_ids
    decoder = generation.StaticDecoder(model, prompt, 10, capture=True)
    assert decoder.graph is not None and decoder.prefill_graph is None
    assert decoder.notes == ["prefill uncaptured: its graph gave another first token"]
    assert decoder.generate(10).token_ids.tolist() == eager.tolist()


def test_a_prefill_graph_whose_tokens_part_later_is_kept_and_noted(model, monkeypatch):
    # The step graph is checked from the captured prefill's state: the row's tokens are the
    # captured prefill's, and the row says where they part from the uncaptured prefill's.
    capture_with(monkeypatch, prefill="later")
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    eager = generation.generate(model, prompt, 10).token_ids
    decoder = generation.StaticDecoder(model, prompt, 10, capture=True)
    assert decoder.graph is not None and decoder.prefill_graph is not None
    assert decoder.notes == ["captured prefill: greedy tokens part from the uncaptured prefill's at token 1"]
    ids = decoder.generate(10).token_ids
    assert ids[:, 0].tolist() == eager[:, 0].tolist() and ids[:, 1].tolist() != eager[:, 1].tolist()


def test_both_captured_when_replays_agree(model, monkeypatch):
    capture_with(monkeypatch)
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    decoder = generation.StaticDecoder(model, prompt, 10, capture=True)
    assert decoder.graph is not None and decoder.prefill_graph is not None and decoder.notes == []


@pytest.mark.parametrize("prefill", ["", "later"])
def test_a_step_whose_replay_changes_the_tokens_makes_the_regime_unavailable(model, monkeypatch, prefill):
    capture_with(monkeypatch, prefill=prefill, wrong_step=True)
    prompt = generation.build_prompt(model, None, SPEC, batch_size=1)
    with pytest.raises(generation.GraphUnavailableError, match="replays differ from the uncaptured step at token 2"):
        generation.StaticDecoder(model, prompt, 10, capture=True)


def test_first_difference_names_the_first_parting_column_or_none():
    first_difference = generation.first_difference
    a = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = a.clone()
    assert first_difference(a, b) is None
    b[1, 2] = 0
    b[0, 3] = 0
    assert first_difference(a, b) == 2


def test_graph_tokens_are_checked_against_the_eager_runs_and_a_parting_is_noted():
    from types import SimpleNamespace

    from ecomeasure.bench.sweep import Sweep

    sweep = SimpleNamespace(_eager_tokens={})

    def check(regime, ids):
        run = SimpleNamespace(token_ids=ids, notes=[], same_tokens_as_eager=None)
        Sweep._check_tokens(sweep, "m", "fp16", 1, regime, run)
        return run

    eager = torch.tensor([[1, 2, 3, 4, 5]])
    assert check("eager", eager).same_tokens_as_eager is None  # eager is the reference
    same = check("graph", eager.clone())
    assert same.same_tokens_as_eager is True and same.notes == []
    parted = eager.clone()
    parted[0, 3] = 9
    run = check("graph", parted)
    assert run.same_tokens_as_eager is False and run.notes == ["tokens differ from the eager regime's from token 3"]
    run = check("graph", eager[:, :4])
    assert run.same_tokens_as_eager is False and run.notes == ["tokens differ from the eager regime's"]
