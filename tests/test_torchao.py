"""torchao's schemes in the bench: names, configs, refusals, unavailable rows, and the bytes
a decode step reads of each scheme's weights (computed here from the architecture's shapes)."""
import csv
import importlib.metadata
import math
import sys

import pytest
import torch

pytest.importorskip("torchao")
import torchao.quantization as tq  # noqa: E402
import torchao.quantization.quant_api as quant_api  # noqa: E402

from ecomeasure import models, quant, roofline, weights  # noqa: E402
from ecomeasure.bench.cli import build_parser, main  # noqa: E402

TORCHAO = ("int4wo", "int8wo", "fp8wo", "fp8dq", "int8dq")
# A refusal that failed to refuse would measure this (seconds), not the default protocol.
SHORT = ["--device", "cpu", "--new-tokens", "2", "--iterations", "1", "--warmup", "0", "--idle-seconds", "0"]


def exit_status(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


# names and configs ---------------------------------------------------------------------
def test_the_names_parse():
    args = build_parser().parse_args(["--model", "tiny-llama-test", "--quant", "bf16", *TORCHAO])
    assert args.quant == ["bf16", *TORCHAO]
    for name in TORCHAO:
        assert quant.get(name).backend == "torchao" and quant.get(name).quantized


def test_each_name_builds_its_torchao_config():
    expected = {
        "int4wo": (tq.Int4WeightOnlyConfig, {"group_size": 128}),
        "int8wo": (tq.Int8WeightOnlyConfig, {}),
        "fp8wo": (tq.Float8WeightOnlyConfig, {}),
        "fp8dq": (tq.Float8DynamicActivationFloat8WeightConfig, {}),
        "int8dq": (tq.Int8DynamicActivationInt8WeightConfig, {}),
    }
    for name, (cls, fields) in expected.items():
        config = quant.quantization_config(name)
        assert type(config).__name__ == "TorchAoConfig"
        inner = config.quant_type
        assert type(inner) is cls, name
        assert inner.set_inductor_config is False, name
        for field, value in fields.items():
            assert getattr(inner, field) == value, (name, field)
        # The output layer and the embeddings stay unquantized (transformers' defaults).
        assert config.modules_to_not_convert is None and config.include_input_output_embeddings is False
        assert quant.from_pretrained_kwargs(name)["dtype"] == torch.bfloat16
    packing = quant.torchao_config("int4wo").int4_packing_format
    assert getattr(packing, "value", packing) == "tile_packed_to_4d"
    granularity = quant.torchao_config("fp8dq").granularity  # activation's and weight's
    assert [type(g) for g in granularity] == [tq.PerRow, tq.PerRow]


def test_bitsandbytes_schemes_do_not_need_torchao_and_the_reverse(monkeypatch):
    monkeypatch.setattr(quant, "bitsandbytes_version", lambda: None)
    quant.require_backends(["fp16", "bf16", *TORCHAO])  # torchao is installed: no error
    monkeypatch.setattr(quant, "bitsandbytes_version", lambda: "0.0-test")
    monkeypatch.setattr(quant, "torchao_version", lambda: None)
    quant.require_backends(["fp16", "nf4", "int8_pure"])
    with pytest.raises(quant.TorchAoMissingError):
        quant.require_backends(["nf4", "int8wo"])


# refusals ------------------------------------------------------------------------------
def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_torchao_refuses_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchao", None)  # as if it were not installed
    assert quant.torchao_version() is None
    status, err = exit_status(capsys, ["--model", "tiny-llama-test", "--quant", "bf16", "int4wo", "fp8dq", *SHORT,
                                       "--out", str(tmp_path), "--weights-dir", str(tmp_path / "w")])
    assert status == 2
    line = _one_line(err)
    assert "int4wo, fp8dq need torchao >= 0.18" in line and "not installed" in line
    assert "pip install 'torchao==0.18.0'" in line
    assert not (tmp_path / "results.csv").exists()  # refused before measuring anything


@pytest.mark.parametrize("version", ["0.17.0", "0.9.1", "not-a-version"])
def test_old_torchao_refuses_in_one_line(capsys, monkeypatch, tmp_path, version):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version if name == "torchao" else real(name))
    status, err = exit_status(capsys, ["--model", "tiny-llama-test", "--quant", "int8wo", *SHORT,
                                       "--out", str(tmp_path), "--weights-dir", str(tmp_path / "w")])
    assert status == 2
    line = _one_line(err)
    assert f"torchao {version} is installed" in line and ">= 0.18" in line
    assert not (tmp_path / "results.csv").exists()


def test_the_pinned_torchao_is_accepted(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.18.0" if name == "torchao" else real(name))
    quant.require_torchao(TORCHAO)


# unavailable combinations --------------------------------------------------------------
H100 = (9, 0)


@pytest.mark.parametrize("name, regime, batch_size, device, capability, needle", [
    ("int8dq", "graph", 1, "cuda", H100, "torch._int_mm needs more than 16 rows"),
    ("int8dq", "compiled", 16, "cuda", H100, "batch size 16"),
    ("fp8dq", "graph", 1, "cuda", (8, 6), "this GPU has 8.6"),
    ("fp8dq", "eager", 8, "cpu", None, "on the CPU"),
    ("int4wo", "eager", 1, "cpu", None, "needs CUDA"),
    ("int4wo", "graph", 1, "cuda", (7, 5), "this GPU has 7.5"),
])
def test_unavailable_combinations_say_why(name, regime, batch_size, device, capability, needle):
    assert needle in quant.unavailable_reason(name, regime, batch_size, device, capability)


@pytest.mark.parametrize("name, regime, batch_size, device, capability", [
    ("int8dq", "graph", 17, "cuda", H100), ("int8dq", "eager", 1, "cuda", H100),
    ("int8dq", "graph", 1, "cpu", None), ("fp8dq", "graph", 1, "cuda", (8, 9)),
    ("fp8wo", "graph", 1, "cuda", (8, 0)), ("int4wo", "compiled", 8, "cuda", (8, 0)),
    ("bf16", "graph", 1, "cpu", None), ("int8_pure", "graph", 1, "cuda", H100),
])
def test_runnable_combinations_have_no_reason(name, regime, batch_size, device, capability):
    assert quant.unavailable_reason(name, regime, batch_size, device, capability) == ""


def test_unavailable_rows_carry_the_reason_and_load_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    status = main(["--model", "tiny-llama-test", *SHORT, "--quant", "int4wo", "fp8dq", "int8wo",
                   "--regime", "eager", "graph", "--out", str(out), "--weights-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert status == 0, err  # unavailable is not a failure of the sweep
    with open(out / "results.csv", newline="") as f:
        rows = {(r["quant"], r["regime"]): r for r in csv.DictReader(f)}
    for regime in ("eager", "graph"):
        for name in ("int4wo", "fp8dq"):
            row = rows[(name, regime)]
            assert row["status"] == "unavailable"
            assert row["error"] == quant.unavailable_reason(name, regime, 1, "cpu", None) != ""
            assert row["weights"] == "random" and row["torchao_version"] == "0.18.0"
        assert rows[("int8wo", regime)]["status"] == "ok"
        assert rows[("int8wo", regime)]["torchao_version"] == importlib.metadata.version("torchao")
    assert "int4wo: loaded" not in err and "fp8dq: loaded" not in err  # not loaded for nothing
    assert "int8wo: loaded" in err


# bytes per decode step -----------------------------------------------------------------
@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    return weights.resolve("tiny-llama-test", weights_dir=tmp_path_factory.mktemp("weights"), device="cpu")


def _ceil(value, multiple):
    return -(-value // multiple) * multiple


def linear_shapes(spec):
    """(out, in) of every quantized linear layer of a Llama-type architecture."""
    h, i, heads, kv = spec.hidden_size, spec.intermediate_size, spec.num_attention_heads, spec.num_key_value_heads
    d = h // heads
    layer = [(heads * d, h), (kv * d, h), (kv * d, h), (h, heads * d), (i, h), (i, h), (h, i)]
    return layer * spec.num_hidden_layers


def stored_bytes(scheme, n, k):
    """Bytes of an n x k linear weight as torchao 0.18 stores it (read from its source)."""
    if scheme == "bf16":
        return 2 * n * k
    if scheme in ("int8wo", "int8dq"):  # Int8Tensor: int8 data, fp32 scale and int8 zero point per row
        return n * k + 4 * n + n
    if scheme == "fp8dq" and (n % 16 or k % 16):  # torchao leaves what torch._scaled_mm cannot take
        return 2 * n * k
    if scheme in ("fp8wo", "fp8dq"):  # Float8Tensor: e4m3 data, fp32 scale per row
        return n * k + 4 * n
    if scheme == "int4wo":
        if k % 128:  # torchao leaves a layer whose rows do not split into groups of 128
            return 2 * n * k
        # Int4TilePackedTo4dTensor: the weight padded to rows of 8 and columns of 1024, two
        # 4-bit values a byte, and a bf16 scale and a bf16 zero per group of 128 per row.
        n, k = _ceil(n, 8), _ceil(k, 1024)
        return n * k // 2 + (k // 128) * n * 2 * 2
    raise AssertionError(scheme)


def expected_weight_bytes(spec, scheme, model):
    quantized = sum(stored_bytes(scheme, n, k) for n, k in linear_shapes(spec))
    head = 2 * spec.vocab_size * spec.hidden_size  # lm_head stays bf16; the embedding table is not read whole
    norms = 2 * spec.hidden_size * (2 * spec.num_hidden_layers + 1)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # rotary frequencies
    return quantized + head + norms + buffers


def _fake_int4_packing(int_data_2d, inner_k_tiles):
    """The CUDA packing kernel's output layout, [n / 8][k / (inner_k_tiles * 16)][32][inner_k_tiles / 2]
    int32 (torchao's docstring of Int4TilePackedTo4dTensor), for a CPU-only torch."""
    n, half_k = int_data_2d.shape
    return torch.zeros(n // 8, 2 * half_k // (inner_k_tiles * 16), 32, inner_k_tiles // 2, dtype=torch.int32)


@pytest.fixture
def cuda_checks_passed(monkeypatch):
    """Lets torchao build int4 and fp8 weights on a CPU-only torch: the checks for a GPU pass
    and the int4 packing kernel yields its layout's shape."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    monkeypatch.setattr(torch.ops.aten, "_convert_weight_to_int4pack", _fake_int4_packing)
    monkeypatch.setattr(quant_api, "is_sm_at_least_89", lambda: True)
    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda *a, **k: None)


@pytest.mark.parametrize("scheme", ["bf16", *TORCHAO])
def test_bytes_per_step_count_each_schemes_stored_weights_and_scales(resolved, scheme, cuda_checks_passed):
    model = weights.load_model(resolved, scheme, "cpu")
    spec = models.MODELS["tiny-llama-test"]
    assert model.lm_head.weight.dtype == torch.bfloat16 and type(model.lm_head.weight) is torch.nn.Parameter
    assert roofline.weight_bytes(model) == expected_weight_bytes(spec, scheme, model)
    floor = roofline.decode_floor(model, 1, 11, 8, roofline.Bandwidth(1e12, "datasheet"))
    assert floor.bytes_per_step == roofline.weight_bytes(model) + floor.kv_bytes_per_step


@pytest.mark.parametrize("scheme", TORCHAO)
@pytest.mark.parametrize("n, k", [(64, 2048), (100, 1536), (96, 64)])
def test_one_layers_bytes(scheme, n, k, cuda_checks_passed):
    # (64, 2048) needs no padding, (100, 1536) pads both ways for int4 (to 104 x 2048), and
    # (96, 64) has rows too short for a group of 128.
    layer = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).to(torch.bfloat16)
    tq.quantize_(layer, quant.torchao_config(scheme))
    got = sum(t.numel() * t.element_size() for t in roofline.stored_tensors(layer[0].weight))
    assert got == stored_bytes(scheme, n, k)


def test_int4_weights_are_about_a_quarter_of_bf16_where_unpadded():
    assert math.isclose(stored_bytes("int4wo", 64, 2048) / stored_bytes("bf16", 64, 2048), 0.5 / 2 + 4 / 128 / 2)


@pytest.mark.parametrize("scheme", TORCHAO)
def test_quantizing_leaves_inductor_settings_alone(resolved, scheme, cuda_checks_passed):
    import torch._inductor.config as inductor
    names = ("coordinate_descent_tuning", "coordinate_descent_check_all_directions",
             "force_fuse_int_mm_with_mul", "fx_graph_cache")
    before = {n: getattr(inductor, n) for n in names}
    precision = torch.get_float32_matmul_precision()
    try:
        weights.load_model(resolved, scheme, "cpu")
        after = {n: getattr(inductor, n) for n in names}
    finally:
        # Restored through the config module's own setattr whatever happens (pytest's
        # monkeypatch deletes attributes it did not find in the module's __dict__ on undo,
        # and torch's config module keeps its settings elsewhere).
        for n, value in before.items():
            setattr(inductor, n, value)
        torch.set_float32_matmul_precision(precision)
    assert after == before
    assert torch.get_float32_matmul_precision() == precision
