"""Tiny Hugging Face checkpoints for the directory-format tests: a random float model saved by
transformers (llama, qwen2 with biases, mistral with a sliding window), a byte-level BPE tokenizer,
and AWQ versions of it written from integer codes the test knows (so the float oracle is exact)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIGS = {
    "llama": dict(model_type="llama"),
    "qwen2": dict(model_type="qwen2"),
    "mistral": dict(model_type="mistral", sliding_window=12),
    "qwen3": dict(model_type="qwen3", head_dim=32),
}
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def write_tokenizer(d: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "Paris is the capital of France"] * 20, tr)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}))


def float_model(d: Path, family: str = "llama", seed: int = 0, outliers: bool = False):
    """A random fp16 model of `family` saved in d (2 layers, d_model 128, ffn 256, 4/2 heads, vocab
    320); outliers: weights 5x transformers' init (sharper logits) and four input channels of every
    linear 10x larger through the norm weights (what AWQ's scales are for). Returns it."""
    import transformers

    torch.manual_seed(seed)
    kw = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=320, max_position_embeddings=128, tie_word_embeddings=False,
              rms_norm_eps=1e-5)
    kw.update(CONFIGS[family])
    mt = kw.pop("model_type")
    cfg = transformers.AutoConfig.for_model(mt, **kw)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float16).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():   # visible biases and norms, not zeros / ones
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
        if outliers:
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.mul_(5)
                elif "layernorm" in name:
                    p[:4] *= 10
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d), safe_serialization=True)
    write_tokenizer(d)
    return model


def awq_from_float(model, d: Path, src: Path, version: str = "gemm", group_size: int = 32):
    """Round-to-nearest AWQ checkpoint of `model` in d; returns the same model with each linear's
    weight replaced by its exact dequantization (q - z) * s, the oracle."""
    import copy

    from pyquant.formats.awq import writer
    from pyquant.quantizers.awq import quantize_codes

    oracle = copy.deepcopy(model).float()
    tensors = {}
    for name, t in model.state_dict().items():
        module = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and module.split("layers.")[-1].split(".", 1)[-1] in LINEARS:
            codes, zeros, scales = quantize_codes(t.float(), group_size)
            if version == "gemm":
                qw, qz, sc = writer.pack_gemm(codes, zeros, scales)
            else:
                qw, sc, qz = writer.pack_gemv_fast(codes, zeros, scales, group_size)
            tensors.update({f"{module}.qweight": qw, f"{module}.qzeros": qz, f"{module}.scales": sc})
            g = group_size
            if version == "gemm":
                dense = (codes.double() - zeros.double().repeat_interleave(g, 1)) * \
                    scales.double().repeat_interleave(g, 1)
            else:   # gemv_fast keeps -s*z rounded to fp16
                mins = (-(scales.float() * zeros.float())).half().double().repeat_interleave(g, 1)
                dense = codes.double() * scales.double().repeat_interleave(g, 1) + mins
            oracle.get_parameter(name).data.copy_(dense.float())   # exact: <= 15 bits of mantissa
        else:
            tensors[name] = t
    cfg = json.loads((src / "config.json").read_text())
    writer.write_checkpoint(d, cfg, tensors, version=version, group_size=group_size, source_dir=src)
    return oracle


# EXL2 layouts per role: mixed widths, several group sizes, one 2-bit layout with 16-row groups
EXL2_LAYOUTS = {
    "self_attn.q_proj": ([6, 4], [0.25, 0.75], {6: 32, 4: 64}),
    "self_attn.k_proj": ([8, 4], [0.1, 0.9], {8: 32, 4: 32}),
    "self_attn.v_proj": ([5, 4], [0.5, 0.5], {5: 64, 4: 64}),
    "self_attn.o_proj": ([4], [1.0], {4: 128}),
    "mlp.gate_proj": ([4, 3], [0.5, 0.5], {4: 64, 3: 64}),
    "mlp.up_proj": ([4, 3], [0.5, 0.5], {4: 64, 3: 64}),
    "mlp.down_proj": ([3, 2], [0.3, 0.7], {3: 32, 2: 16}),
    "lm_head": ([8, 6], [0.15, 0.85], {8: 32, 6: 32}),
}


def exl2_from_float(model, d: Path, src: Path, seed: int = 0):
    """An EXL2 directory of `model` (layouts above, random act-order per shared input: q/k/v one,
    gate/up one, as ExLlamaV2's shared Hessians give) and the float oracle holding the exact
    dequantized weights."""
    import copy

    from pyquant.formats.exl2 import layouts, reader, writer

    g = torch.Generator().manual_seed(seed)
    oracle = copy.deepcopy(model).float()
    tensors, perms = {}, {}
    for name, t in model.state_dict().items():
        module = name.rsplit(".", 1)[0]
        role = "lm_head" if module == "lm_head" else module.split("layers.")[-1].split(".", 1)[-1]
        if name.endswith(".weight") and role in EXL2_LAYOUTS:
            n, k = t.shape
            share = (module.rsplit(".", 1)[0], "qkv" if role[-6] in "qkv" and "self_attn" in role else role)
            if role in ("mlp.gate_proj", "mlp.up_proj"):
                share = (module.rsplit(".", 1)[0], "gate_up")
            perm = perms.setdefault(share, torch.randperm(k, generator=g))
            groups = writer.layout(k, *EXL2_LAYOUTS[role])
            enc, _ = writer.encode_linear(t.float(), groups, perm)
            tensors.update({f"{module}.{s}": v for s, v in enc.items()})
            c = layouts.unpack("t", module, n, k, *(enc[s] for s in reader.TENSORS))
            oracle.get_parameter(name).data.copy_(layouts.dequantize(c, torch.float32))
        else:
            tensors[name] = t
    cfg = json.loads((src / "config.json").read_text())
    writer.write_directory(d, cfg, tensors, bits=4.0, head_bits=8, source_dir=src)
    return oracle


def forge_tensor(path: Path, name: str, value) -> None:
    """Replace tensor `name` of a safetensors file by `value` (a tensor, or a function of the old one),
    or delete it (None): the forged-file tests."""
    from safetensors.torch import load_file, save_file

    t = load_file(str(path))
    if value is None:
        del t[name]
    else:
        t[name] = value(t[name]) if callable(value) else value
    save_file(t, str(path))
