"""The model registry: aliases, HF ids and the exact architectures of the seed's models."""
import pytest

from ecomeasure import models

# The published config.json values, written out again here (not copied from the registry)
# so that a typo in either place fails: (hf_id, model_type, hidden, intermediate, layers,
# heads, kv heads, vocab, rope theta, tied embeddings).
SEED = {
    "tinyllama": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", 2048, 5632, 22, 32, 4, 32000, 1e4, False),
    "qwen2-1.5b": ("Qwen/Qwen2-1.5B-Instruct", "qwen2", 1536, 8960, 28, 12, 2, 151936, 1e6, True),
    "qwen2.5-3b": ("Qwen/Qwen2.5-3B-Instruct", "qwen2", 2048, 11008, 36, 16, 2, 151936, 1e6, True),
    "qwen2-7b": ("Qwen/Qwen2-7B-Instruct", "qwen2", 3584, 18944, 28, 28, 4, 152064, 1e6, False),
    "yi-1.5-6b": ("01-ai/Yi-1.5-6B-Chat", "llama", 4096, 11008, 32, 32, 4, 64000, 5e6, False),
    "mistral": ("mistralai/Mistral-7B-Instruct-v0.3", "mistral", 4096, 14336, 32, 32, 8, 32768, 1e6, False),
    "phi3-mini": ("microsoft/Phi-3-mini-4k-instruct", "phi3", 3072, 8192, 32, 32, 32, 32064, 1e4, False),
    "qwen2.5-7b": ("Qwen/Qwen2.5-7B-Instruct", "qwen2", 3584, 18944, 28, 28, 4, 152064, 1e6, False),
}

# Parameter counts of the published checkpoints (sum of the safetensors shapes).
PARAMS = {
    "tinyllama": 1_100_048_384, "qwen2-1.5b": 1_543_714_304, "qwen2.5-3b": 3_085_938_688,
    "qwen2-7b": 7_615_616_512, "yi-1.5-6b": 6_061_035_520, "mistral": 7_248_023_552,
    "phi3-mini": 3_821_079_552, "qwen2.5-7b": 7_615_616_512,
}


def test_the_eight_seed_models_are_listed_in_order_then_the_test_architecture():
    assert [m.alias for m in models.listed_models()] == [*SEED, "tiny-llama-test"]
    assert [m.alias for m in models.listed_models() if m.test_architecture] == ["tiny-llama-test"]


@pytest.mark.parametrize("alias", list(SEED))
def test_config_values_are_the_published_ones(alias):
    hf_id, model_type, hidden, inter, layers, heads, kv, vocab, theta, tied = SEED[alias]
    config = models.MODELS[alias].build_config()
    assert models.MODELS[alias].hf_id == hf_id
    assert config.model_type == model_type
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers,
            config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (
        hidden, inter, layers, heads, kv, vocab)
    assert config.rope_parameters["rope_theta"] == theta
    assert config.tie_word_embeddings is tied


def test_architecture_details():
    mistral = models.MODELS["mistral"].build_config()
    assert mistral.sliding_window is None and mistral.max_position_embeddings == 32768
    phi3 = models.MODELS["phi3-mini"].build_config()
    assert phi3.sliding_window == 2047 and phi3.max_position_embeddings == 4096
    yi = models.MODELS["yi-1.5-6b"].build_config()
    assert yi.rms_norm_eps == 1e-6 and yi.max_position_embeddings == 4096
    assert models.MODELS["tinyllama"].build_config().max_position_embeddings == 2048
    assert models.MODELS["qwen2-1.5b"].build_config().rms_norm_eps == 1e-6


@pytest.mark.parametrize("alias", list(PARAMS))
def test_parameter_counts_are_counted_from_the_architecture(alias):
    assert models.spec_parameter_count(alias) == PARAMS[alias]


def test_lookup_by_alias_extra_alias_and_hf_id():
    assert models.lookup("mistral-7b") is models.MODELS["mistral"]
    assert models.lookup("MISTRAL") is models.MODELS["mistral"]
    assert models.lookup("mistralai/Mistral-7B-Instruct-v0.3") is models.MODELS["mistral"]
    assert models.lookup("someone/else") is None


def test_check_model_name_accepts_hf_ids_and_paths(tmp_path):
    assert models.check_model_name("tinyllama") == "tinyllama"
    assert models.check_model_name("org/model") == "org/model"
    assert models.check_model_name(str(tmp_path)) == str(tmp_path)


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(models.UnknownModelError) as err:
        models.check_model_name("llama-70b")
    for alias in [*SEED, "mistral-7b"]:
        assert alias in str(err.value)


def test_test_architecture_is_named_as_one_in_the_unknown_model_error():
    with pytest.raises(models.UnknownModelError) as err:
        models.check_model_name("llama-70b")
    assert "tiny-llama-test (a test architecture)" in str(err.value)
    assert models.valid_names()[-1] == "tiny-llama-test (a test architecture)"
    assert all("test architecture" not in name for name in models.valid_names()[:-1])


def test_test_architecture_is_usable():
    spec = models.lookup("tiny-llama-test")
    assert spec is not None and spec.test_architecture and spec.hf_id is None
    config = spec.build_config()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == (2, 64, 4, 2, 512)


def test_prompt_estimates_are_plausible():
    for spec in (m for m in models.listed_models() if not m.test_architecture):
        assert 8 <= spec.prompt_tokens <= 12
        assert spec.prompt_adds_bos == (spec.model_type != "qwen2" and spec.alias != "yi-1.5-6b")


def test_list_models_shows_the_test_architecture_marked(capsys, monkeypatch):
    """``python -m ecomeasure.bench --list-models``: the seed's models and, last, the CPU smoke
    model that ``--help`` suggests, marked as a test architecture."""
    from ecomeasure.bench import cli

    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["--list-models"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "tiny-llama-test" in line]
    assert len(lines) == 1 and "test architecture" in lines[0]
