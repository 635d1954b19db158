"""Quantization configs: field for field what the seed study built."""
import pytest
import torch
from transformers import BitsAndBytesConfig

from ecomeasure import quant

# The seed's literals (dataset memo, "Quantization Configuration").
SEED_CONFIGS = {
    "nf4": lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.float16,
                                      bnb_4bit_use_double_quant=False),
    "int8": lambda: BitsAndBytesConfig(load_in_8bit=True),
    "int8_pure": lambda: BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=0.0,
                                            llm_int8_skip_modules=None),
}


@pytest.fixture
def with_bitsandbytes(monkeypatch):
    """Pretends bitsandbytes is installed (it is not, here): only the configs are built."""
    monkeypatch.setattr(quant, "bitsandbytes_version", lambda: "0.0-test")


@pytest.fixture
def without_bitsandbytes(monkeypatch):
    monkeypatch.setattr(quant, "bitsandbytes_version", lambda: None)


def test_names():
    assert list(quant.QUANTS) == ["fp16", "bf16", "nf4", "nf4_dq", "fp4", "int8", "int8_pure",
                                 "int4wo", "int8wo", "fp8wo", "fp8dq", "int8dq"]


@pytest.mark.parametrize("name", list(SEED_CONFIGS))
def test_configs_equal_the_seeds(name):
    assert quant.quantization_config(name).to_dict() == SEED_CONFIGS[name]().to_dict()


def test_int8_fields():
    standard, pure = quant.quantization_config("int8"), quant.quantization_config("int8_pure")
    assert standard.load_in_8bit and not standard.load_in_4bit
    assert standard.llm_int8_threshold == 6.0  # the default: mixed-precision decomposition
    assert pure.load_in_8bit and pure.llm_int8_threshold == 0.0 and pure.llm_int8_skip_modules is None


def test_4bit_variants():
    nf4, nf4_dq, fp4 = (quant.quantization_config(n) for n in ("nf4", "nf4_dq", "fp4"))
    for config in (nf4, nf4_dq, fp4):
        assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.float16
    assert nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant is False
    assert nf4_dq.bnb_4bit_quant_type == "nf4" and nf4_dq.bnb_4bit_use_double_quant is True
    assert fp4.bnb_4bit_quant_type == "fp4" and fp4.bnb_4bit_use_double_quant is False


def test_unquantized_configs_are_dtype_only(without_bitsandbytes):
    assert quant.quantization_config("fp16") is None
    assert quant.from_pretrained_kwargs("fp16") == {"dtype": torch.float16}
    assert quant.from_pretrained_kwargs("bf16") == {"dtype": torch.bfloat16}


def test_quantized_kwargs(with_bitsandbytes):
    kwargs = quant.from_pretrained_kwargs("int8_pure")
    assert kwargs["dtype"] == torch.float16
    assert kwargs["quantization_config"].to_dict() == SEED_CONFIGS["int8_pure"]().to_dict()


@pytest.mark.parametrize("name", ["nf4", "nf4_dq", "fp4", "int8", "int8_pure"])
def test_missing_bitsandbytes_says_how_to_install(without_bitsandbytes, name):
    with pytest.raises(quant.BitsAndBytesMissingError, match="pip install bitsandbytes"):
        quant.from_pretrained_kwargs(name)
    quant.require_bitsandbytes(["fp16", "bf16"])  # no error: not quantized


def test_bitsandbytes_detection_needs_no_import(monkeypatch):
    import importlib.metadata
    import importlib.util
    import sys

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert quant.bitsandbytes_version() is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"bitsandbytes": "0.45.1"}[name])
    assert quant.bitsandbytes_version() == "0.45.1"

    def no_metadata(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", no_metadata)
    assert quant.bitsandbytes_version() == "unknown"  # found, but its version is not recorded
    assert "bitsandbytes" not in sys.modules


def test_unknown_quant_lists_the_valid_ones():
    with pytest.raises(quant.UnknownQuantError) as err:
        quant.get("int4")
    for name in quant.QUANTS:
        assert name in str(err.value)
