"""benchmarks/decode/decode_speed.py's kernel kinds, on names seen in its H200 profile."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "decode_speed", Path(__file__).resolve().parent.parent / "benchmarks" / "decode" / "decode_speed.py")
decode_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_speed)


@pytest.mark.parametrize("name, kind", [
    ("nvjet_sm90_hsh_128x8_64x12_4x1_v_bz_TNT", "matmul"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __half, float, __half, false>", "matmul"),
    ("cudnn_generated_fort_native_sdpa_sm80_flash_fprop_wmma_f16_knob_3_64x64x128", "attention"),
    ("triton_poi_fused__scaled_dot_product_cudnn_attention__to_copy__unsafe_view_add", "triton (fused)"),
    ("triton_poi_fused__unsafe_view_mul_silu_8", "triton (fused)"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps", "other"),
])
def test_kernel_kinds(name, kind):
    assert decode_speed.kernel_kind(name) == kind
