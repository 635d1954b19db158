"""The memory-bandwidth floor of a decode step, and the outlier flags of iterations."""
import math

import pytest
import torch

from ecomeasure import roofline, weights
from ecomeasure.bench.rows import outliers


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    resolved = weights.resolve("tiny-llama-test", weights_dir=tmp_path_factory.mktemp("weights"), device="cpu")
    return weights.load_model(resolved, "fp16", "cpu")


def test_weight_bytes_count_every_weight_but_the_input_embedding_table(model):
    embedding = model.get_input_embeddings().weight
    everything = sum(p.numel() * p.element_size() for p in model.parameters())
    everything += sum(b.numel() * b.element_size() for b in model.buffers())
    assert roofline.weight_bytes(model) == everything - embedding.numel() * 2


def test_a_tied_output_layer_keeps_the_table(model):
    untied = roofline.weight_bytes(model)
    head = model.get_output_embeddings()
    saved = head.weight
    try:
        head.weight = model.get_input_embeddings().weight  # as tied models (small Qwens) do
        assert roofline.weight_bytes(model) == untied  # the table is read once, by the head
    finally:
        head.weight = saved


def test_kv_cache_bytes_follow_the_architecture(model):
    c = model.config  # 2 layers, 2 KV heads, head dim 16
    got = roofline.kv_cache_bytes_per_step(c, batch_size=3, prompt_tokens=11, new_tokens=8, dtype_bytes=2)
    assert got == 2 * 2 * 2 * (64 // 4) * 2 * 3 * (11 + 4)


def test_floor_and_fraction():
    floor = roofline.DecodeFloor(weight_bytes=4_000, kv_bytes_per_step=1_000.0,
                                 bandwidth=roofline.Bandwidth(1e6, "datasheet"))
    assert floor.floor_s_per_step == pytest.approx(5e-3)
    assert floor.fraction(10e-3) == pytest.approx(0.5)
    assert math.isnan(floor.fraction(0.0))


def test_bandwidth_from_the_datasheet_table_when_nvml_has_none():
    assert roofline.peak_bandwidth(None, "NVIDIA H200") == roofline.Bandwidth(4.8e12, "datasheet")
    unknown = roofline.peak_bandwidth(None, "Fake GPU")
    assert unknown.source == "unknown" and math.isnan(unknown.bytes_per_s)


def test_outliers_beyond_three_scaled_mads():
    steady = [100.0, 101.0, 99.0, 100.5, 99.5]
    assert outliers(steady) == [False] * 5
    assert outliers([50.0, *steady]) == [True] + [False] * 5  # a cold first iteration
    assert outliers([100.0, 100.0]) == [False, False]  # too few to judge
    assert outliers([100.0, 100.0, 100.0, 130.0]) == [False] * 4  # MAD 0: no spread to judge by


def test_bandwidth_from_nvml_memory_clock_and_bus_width(monkeypatch):
    # Double data rate: bytes/s = max memory clock x 2 x bus width / 8 (on an H200, NVML's
    # figures gave 4,814 GB/s, against a data sheet's 4,800).
    monkeypatch.setattr(roofline, "_nvml_memory", lambda index, library: (3201e6, 6144))
    assert roofline.peak_bandwidth(0, "NVIDIA H200") == roofline.Bandwidth(3201e6 * 2 * 6144 / 8, "nvml")
    monkeypatch.setattr(roofline, "_nvml_memory", lambda index, library: (0.0, 6144))
    assert roofline.peak_bandwidth(0, "NVIDIA H200").source == "datasheet"  # a clock NVML does not know

    def fails(index, library):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
    monkeypatch.setattr(roofline, "_nvml_memory", fails)
    assert roofline.peak_bandwidth(0, "NVIDIA H200") == roofline.Bandwidth(4.8e12, "datasheet")


def test_bitsandbytes_scales_count_with_the_weights(model):
    # 4-bit weights carry absmax and a code book (and, double-quantized, their own); int8 rows
    # a scale each: a decode step reads them all.
    from types import SimpleNamespace
    plain = roofline.weight_bytes(model)
    first, second = list(model.parameters())[1:3]
    first.quant_state = SimpleNamespace(absmax=torch.zeros(10), code=torch.zeros(16),
                                        state2=SimpleNamespace(absmax=torch.zeros(3), code=torch.zeros(4)))
    second.SCB = torch.zeros(5)
    try:
        assert roofline.weight_bytes(model) == plain + (10 + 16 + 3 + 4 + 5) * 4
    finally:
        del first.quant_state, second.SCB


def test_kv_cache_bytes_without_head_dim_or_kv_heads_in_the_config():
    from types import SimpleNamespace
    mha = SimpleNamespace(num_attention_heads=4, hidden_size=64, num_hidden_layers=2)  # head dim 16
    assert roofline.kv_cache_bytes_per_step(mha, 1, 10, 4, 2) == 2 * 2 * 4 * 16 * 2 * 1 * 12
    wide = SimpleNamespace(num_attention_heads=4, num_key_value_heads=1, head_dim=32, hidden_size=64,
                           num_hidden_layers=1)
    assert roofline.kv_cache_bytes_per_step(wide, 2, 0, 2, 2) == 2 * 1 * 1 * 32 * 2 * 2 * 1


def test_decode_floor_reads_the_weights_and_a_half_precision_cache(model):
    bandwidth = roofline.Bandwidth(1e9, "datasheet")
    floor = roofline.decode_floor(model, 2, 11, 8, bandwidth)
    assert floor.weight_bytes == roofline.weight_bytes(model)
    assert floor.kv_bytes_per_step == roofline.kv_cache_bytes_per_step(model.config, 2, 11, 8, 2)
    assert floor.floor_s_per_step == pytest.approx((floor.weight_bytes + floor.kv_bytes_per_step) / 1e9)


def test_an_iteration_a_tenth_of_a_percent_off_is_no_outlier():
    # Graph-regime spreads are ~0.01 %: 3 MADs alone would flag an iteration 0.13 % slow
    # (seen on the H200); flags need 1 % of the median as well.
    steady = [315.30, 315.28, 315.31, 315.29, 314.89]  # the last 0.13 % slow
    assert outliers(steady, min_fraction=0.0)[-1] is True
    assert outliers(steady) == [False] * 5
    assert outliers([*steady[:4], 308.0]) == [False] * 4 + [True]  # 2.3 % slow: flagged
