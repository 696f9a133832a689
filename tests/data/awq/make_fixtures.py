"""Makes tests/data/awq/{autoawq,compressed}.safetensors with the producers' own packers (no calibration):
AutoAWQ 0.2.9's WQLinear_GEMM / WQLinear_GEMV / WQLinear_GEMVFast.from_linear with given integer
codes, zeros and fp16 scales, and compressed-tensors' pack_to_int32 + dequantize (pack-quantized,
group and channel strategies, symmetric and asymmetric). Each case stores the packed tensors as the
producer wrote them and the producer's dequantized weight ("expected"):
  gemm            awq.utils.packing_utils.dequantize_gemm  ((q - z) * s in fp16)
  gemv            (q - z) * s rounded once to fp16 (AutoAWQ has no CPU dequant for it; its CUDA
                  kernel computes the same product)
  gemv_fast       q * s + qzeros rounded once to fp16 (the layout stores -s*z already rounded to fp16;
                  the kernels apply it with one fp16 FMA)
  pack-quantized  compressed_tensors.quantization.lifecycle.forward.dequantize

Run with the producers installed (pyquant's tests never need them). AutoAWQ 0.2.9 wants
transformers 4.51 and compressed-tensors 0.20 wants transformers >= 5, so two environments:
  python3 -m venv venv-awq && venv-awq/bin/pip install torch==2.13.0 numpy "transformers==4.51.3" \
      "autoawq==0.2.9" safetensors
  venv-awq/bin/python tests/data/awq/make_fixtures.py autoawq
  pip install compressed-tensors==0.20.1 && python3 tests/data/awq/make_fixtures.py compressed
"""
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
N, K = 32, 256


def integer_case(g, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (N, K), generator=gen)
    z = torch.randint(0, 16, (N, K // g), generator=gen)
    s = (torch.rand(N, K // g, generator=gen) * 0.02 + 1e-3).half()
    return q, z, s


def awq_cases(out):
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.modules.linear.gemv import WQLinear_GEMV
    from awq.modules.linear.gemv_fast import WQLinear_GEMVFast
    from awq.utils.packing_utils import dequantize_gemm

    for gi, g in enumerate((32, 64, 128)):
        q, z, s = integer_case(g, gi)
        lin = torch.nn.Linear(K, N, bias=False)
        # the float weight the packers round back to q: exactly (q - z) * s in float32
        lin.weight.data = ((q - z.repeat_interleave(g, 1)) * s.float().repeat_interleave(g, 1)).float()
        m = WQLinear_GEMM.from_linear(lin, 4, g, scales=s.t().contiguous(), zeros=z.t().contiguous())  # [K/G, N]
        p = f"gemm.g{g}."
        out.update({p + "qweight": m.qweight, p + "qzeros": m.qzeros, p + "scales": m.scales,
                    p + "expected": dequantize_gemm(m.qweight, m.qzeros, m.scales, 4, g).t().contiguous()})
        m = WQLinear_GEMV.from_linear(lin, 4, g, scales=s, zeros=z)
        p = f"gemv.g{g}."
        exact = (q - z.repeat_interleave(g, 1)).double() * s.double().repeat_interleave(g, 1)
        out.update({p + "qweight": m.qweight, p + "qzeros": m.qzeros, p + "scales": m.scales,
                    p + "expected": exact.half()})
        m = WQLinear_GEMVFast.from_linear(lin, 4, g, scales=s, zeros=z)
        p = f"gemv_fast.g{g}."
        qz = m.qzeros[:K // g].t().double().repeat_interleave(g, 1)
        exact = q.double() * s.double().repeat_interleave(g, 1) + qz
        out.update({p + "qweight": m.qweight, p + "qzeros": m.qzeros, p + "scales": m.scales,
                    p + "expected": exact.half()})


def compressed_cases(out):
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    for ci, (strategy, g, symmetric) in enumerate([("group", 64, False), ("group", 128, True),
                                                   ("channel", K, False)]):
        q, z, s = integer_case(g, 10 + ci)
        qs = (q - 8).to(torch.int8)
        zs = torch.zeros_like(z, dtype=torch.int8) if symmetric else (z - 8).to(torch.int8)
        scale = s.to(torch.bfloat16)
        args = QuantizationArgs(num_bits=4, type="int", symmetric=symmetric, strategy=strategy,
                                group_size=g if strategy == "group" else None)
        p = f"pack_quantized.{strategy}{g}.{'sym' if symmetric else 'asym'}."
        out[p + "weight_packed"] = pack_to_int32(qs, 4)
        out[p + "weight_scale"] = scale
        if not symmetric:
            out[p + "weight_zero_point"] = pack_to_int32(zs, 4, packed_dim=0)
        out[p + "weight_shape"] = torch.tensor([N, K], dtype=torch.int32)
        out[p + "expected"] = dequantize(qs, scale, None if symmetric else zs, args, dtype=torch.bfloat16)


if __name__ == "__main__":
    out = {}
    part = sys.argv[1]
    {"autoawq": awq_cases, "compressed": compressed_cases}[part](out)
    path = Path(__file__).with_name(f"{part}.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, str(path), metadata={"N": str(N), "K": str(K)})
    print(f"{path}: {len(out)} tensors")
