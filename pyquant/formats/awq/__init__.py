"""AWQ-family checkpoints (AutoAWQ / llm-awq gemm, gemv, gemv_fast; compressed-tensors pack-quantized):
which one a directory holds (config.py), the on-disk layouts unpacked (layouts.py), the linears read
into pyquant's int4 layout (reader.py), and the gemm / gemv_fast writer (writer.py)."""
