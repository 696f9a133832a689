"""The quantized model against an independent float implementation of the same weights
(tests/reference_llama.py: gguf-package dequantization, float64, no KV cache), plus the tied
output / GQA / RoPE plumbing, a synthetic qwen2 model (neox RoPE, Q/K/V biases) and peak RSS.

Tolerances: with float activations (_C.set_matmul_act("float")) the kernels compute the dequantized
weights' product in float32, so the logits must equal the float64 reference to ~1e-4 (measured 3.5e-5
max |diff| on logits spanning ±30): that pins down every piece of plumbing. The one-pass int8 path
(set_matmul_act("int8")) quantizes activations to 8 bits per block of 32, as llama.cpp does; over 30
layers that costs ~4.6% relative RMS on the logits (measured; max |diff| 1.28), so there we require the
same top-1 token at every position, a relative RMS error below 8% and the first 5 greedy tokens. The
default path (int8x2) adds the int8-quantized residual: its rounding step is 1/254 of one pass's, so
~4.6% / 254 ~ 2e-4 is expected (bound 2e-3) and the whole greedy continuation must agree.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import pyquant
from reference_llama import ReferenceLlama

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def model(smollm2_path):
    return pyquant.load(smollm2_path, max_seq_len=256)


@pytest.fixture(scope="module")
def reference(smollm2_path):
    return ReferenceLlama(smollm2_path)


def test_config_from_metadata(model):
    c = model.config
    assert (c.arch, c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim) == \
        ("llama", 30, 576, 9, 3, 64, 1536)
    assert (c.rope_base, c.rope_dim, c.vocab_size) == (100000.0, 64, 49152)
    assert abs(c.norm_eps - 1e-5) < 1e-9
    assert model.output.name == "token_embd.weight"          # tied: no output.weight in the file
    assert len(model.layers[0].qkv) == 1 and len(model.layers[0].gate_up) == 1   # fused
    assert model.layers[0].qkv[0].qt.shape == (576 + 2 * 192, 576)


def test_weights_stay_quantized(model, smollm2_path):
    # every linear is a packed QTensor; the embedding table is the file's Q8_0 bytes
    assert model.embed.qt.qtype == pyquant.QType.Q8_0
    assert all(lin.dense is None for L in model.layers for lin in (*L.qkv, L.wo, *L.gate_up, L.down))
    assert model.weight_nbytes < smollm2_path.stat().st_size


def _rel_rms(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_prefill_logits_exact_with_float_activations(model, reference, float_activations):
    ids = model.tokenizer.encode(PROMPT + " Paris, and the capital of Japan is")
    ours = model.forward(ids, 0, all_logits=True).double()          # [S, vocab]
    ref = reference.forward(ids)
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) < 1e-3
    step = model.step(int(ref[-1].argmax()), len(ids)).double()
    ref2 = reference.forward(ids + [int(ref[-1].argmax())])[-1]
    assert float((step - ref2).abs().max()) < 1e-3


def test_prefill_logits_close_default_activations(model, reference):
    ids = model.tokenizer.encode(PROMPT)
    ours = model.forward(ids, 0, all_logits=True).double()
    ref = reference.forward(ids)
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    assert _rel_rms(ours, ref) < 2e-3


def test_prefill_logits_close_with_int8_activations(model, reference, int8_activations):
    ids = model.tokenizer.encode(PROMPT)
    ours = model.forward(ids, 0, all_logits=True).double()
    ref = reference.forward(ids)
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    assert _rel_rms(ours, ref) < 0.08


@pytest.fixture(scope="module")
def reference_greedy(model, reference):
    ref = model.tokenizer.encode(PROMPT)
    for _ in range(8):
        ref.append(int(reference.forward(ref)[-1].argmax()))
    return ref


def _greedy(model, n):
    ours = model.tokenizer.encode(PROMPT)
    logits = model.forward(ours, 0)
    for _ in range(n):
        ours.append(int(logits.argmax()))
        logits = model.step(ours[-1], len(ours) - 1)
    return ours


def test_greedy_generation_matches_reference_float_activations(model, reference_greedy, float_activations):
    assert _greedy(model, 8) == reference_greedy
    assert "Paris" in model.tokenizer.decode(reference_greedy[5:])


def test_greedy_generation_matches_reference_default_activations(model, reference_greedy):
    assert _greedy(model, 8) == reference_greedy


def test_greedy_generation_matches_reference_int8_activations(model, reference_greedy, int8_activations):
    # 8-bit activation noise flips a near-tie at the 6th token ("The answer" / "The United"), as it
    # would in llama.cpp: the first 5 tokens must agree.
    assert _greedy(model, 5) == reference_greedy[:10]


def test_step_equals_batched_forward(model, float_activations):
    """The GEMV step path and the batched path compute the same function of the same cache
    (float activations: with int8 ones, kernels for different M may round differently)."""
    ids = model.tokenizer.encode("One two three four five six")
    model.forward(ids[:-1], 0)
    step = model.step(ids[-1], len(ids) - 1).clone()
    full = model.forward(ids, 0, all_logits=True)[-1]
    assert float((step - full).abs().max()) < 2e-3 * float(full.abs().max())


def test_continuation_after_prefill_offset(model, float_activations):
    """A second prefill at start_pos > 0 (chat turns) equals one prefill of the whole text."""
    ids = model.tokenizer.encode("Alpha beta gamma delta epsilon zeta eta theta")
    whole = model.forward(ids, 0, all_logits=True)[5:].clone()
    model.forward(ids[:5], 0)
    part = model.forward(ids[5:], 5, all_logits=True)
    assert float((part - whole).abs().max()) < 2e-3 * float(whole.abs().max())


def test_bad_token_ids(model):
    with pytest.raises(pyquant.PyquantError):
        model.forward([0, 49152])
    with pytest.raises(pyquant.PyquantError):
        model.forward(list(range(300)))   # beyond max_seq_len = 256
    with pytest.raises(pyquant.PyquantError):
        model.step(49152, 0)       # would index past the embedding table
    with pytest.raises(pyquant.PyquantError):
        model.step(-1, 0)


def test_peak_rss_within_file_size_plus_300mb(smollm2_path):
    from child_process import peak_rss_of_a_generation

    peak = peak_rss_of_a_generation(smollm2_path)
    size = smollm2_path.stat().st_size
    print(f"peak RSS {peak / 1e6:.0f} MB, file {size / 1e6:.0f} MB")
    # measured 392.6e6 bytes = file + 294e6, of which `import torch` alone is 229e6 (218 MiB)
    assert peak < size + 300 * 2**20


def _write_tiny_model(path, arch, seed=0, biases=True, tied=False, qk_norm=False, sliding_window=0, n_layers=2,
                      post_norms=False, softcap=0.0, d=64, H=4, Hkv=2, ff=96, qtype="Q8_0"):
    """A random 2-layer model in GGUF (Q8_0 weights, F32 norms/biases) with a byte-level vocab
    (d, H, Hkv, ff and the weights' qtype settable: bench/model_cuda_check.py times a bigger one)."""
    from pyquant.formats.gguf import GGUFValueType, GGUFWriter
    from pyquant.runtime.tokenizer import _bytes_to_unicode

    g = torch.Generator().manual_seed(seed)
    hd, V = d // H, 256
    qtype = pyquant.QType[qtype]
    w = GGUFWriter(path)
    for k, v in {"general.architecture": arch, f"{arch}.block_count": n_layers,
                 f"{arch}.context_length": 256, f"{arch}.embedding_length": d,
                 f"{arch}.feed_forward_length": ff, f"{arch}.attention.head_count": H,
                 f"{arch}.attention.head_count_kv": Hkv, f"{arch}.rope.freq_base": 10000.0,
                 f"{arch}.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.model": "gpt2",
                 "tokenizer.ggml.pre": "qwen2", "tokenizer.ggml.tokens": list(_bytes_to_unicode().values()),
                 "tokenizer.ggml.token_type": [1] * V,
                 "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1}.items():
        # counts and ids as UINT32, as llama.cpp writes them (its loader refuses INT32 there, and
        # bench/bench_vs_llamacpp.py runs llama-bench on a bigger model written here)
        w.add_field(k, v, vtype=GGUFValueType.UINT32 if type(v) is int else None)
    w.add_field("tokenizer.ggml.merges", [], elem_type=GGUFValueType.STRING)
    if sliding_window:
        w.add_field(f"{arch}.attention.sliding_window", sliding_window)
    if softcap:
        w.add_field(f"{arch}.final_logit_softcapping", float(softcap))

    def q8(name, rows, cols, scale=0.15):
        t = torch.randn(rows, cols, generator=g) * scale * (64 / d) ** 0.5   # unit-ish outputs at any d
        w.add_tensor(name, pyquant.quantize(t, qtype), qtype, (rows, cols))

    def f32(name, n, mean=0.0):
        w.add_tensor(name, (mean + 0.1 * torch.randn(n, generator=g)).numpy(), pyquant.QType.F32, (n,))

    q8("token_embd.weight", V, d, 1.0)
    if not tied:
        q8("output.weight", V, d)
    f32("output_norm.weight", d, 1.0)
    for i in range(n_layers):
        p = f"blk.{i}."
        f32(p + "attn_norm.weight", d, 1.0)
        f32(p + "ffn_norm.weight", d, 1.0)
        for name, rows, cols in (("attn_q", H * hd, d), ("attn_k", Hkv * hd, d), ("attn_v", Hkv * hd, d),
                                 ("attn_output", d, H * hd), ("ffn_gate", ff, d), ("ffn_up", ff, d),
                                 ("ffn_down", d, ff)):
            q8(p + name + ".weight", rows, cols)
        if biases:
            for name, n in (("attn_q", H * hd), ("attn_k", Hkv * hd), ("attn_v", Hkv * hd)):
                f32(p + name + ".bias", n)
        if qk_norm:
            f32(p + "attn_q_norm.weight", hd, 1.0)
            f32(p + "attn_k_norm.weight", hd, 1.0)
        if post_norms:
            f32(p + "post_attention_norm.weight", d, 1.0)
            f32(p + "post_ffw_norm.weight", d, 1.0)
    w.write()
    return path


@pytest.mark.parametrize("arch,biases,tied,qk_norm,window", [
    ("qwen2", True, False, False, 0), ("llama", False, True, False, 0), ("qwen3", False, False, True, 0),
    ("mistral", False, False, False, 7)])
def test_tiny_synthetic_models_match_reference(tmp_path, arch, biases, tied, qk_norm, window, float_activations):
    """qwen2: neox RoPE (run through permuted Q/K rows) and Q/K/V biases; llama: tied output;
    qwen3: neox RoPE and QK-norm (its weights permuted with the rows of each head); mistral: a
    sliding window of 7 positions over 32 tokens (prefill mask, C++ step, forward step)."""
    path = _write_tiny_model(tmp_path / f"{arch}.gguf", arch, biases=biases, tied=tied, qk_norm=qk_norm,
                             sliding_window=window)
    m = pyquant.load(path, max_seq_len=64)
    assert type(m).rope_style == ("neox" if arch.startswith("qwen") else "normal")
    assert type(m).qk_norm == qk_norm and m.config.sliding_window == window
    ids = list(range(40, 72))
    ref = ReferenceLlama(path).forward(ids)
    ours = m.forward(ids, 0, all_logits=True).double()
    assert float((ours - ref).abs().max()) < 1e-3 * float(ref.abs().max())
    m.forward(ids[:-1], 0)
    assert m._step.mode == "native"   # the C++ step (biases, permuted Q/K rows, tied output)
    step = m.step(ids[-1], len(ids) - 1).double()
    assert float((step - ref[-1]).abs().max()) < 1e-3 * float(ref.abs().max())
    one = m.forward([ids[-1]], len(ids) - 1).double()          # the forward's own one-token step
    assert float((one - ref[-1]).abs().max()) < 1e-3 * float(ref.abs().max())


def test_tiny_gemma3_matches_reference(tmp_path, float_activations):
    """gemma3: embedding scale, QK-norm, post-norms, GELU-tanh, neox RoPE, 5 local layers (window 5,
    RoPE base 10000) per global one (rope.freq_base 10000 here too: the tiny file's), soft-capped
    logits; 7 layers so that layer 5 is global and layer 6 local again. Prefill, the C++ step (which
    mirrors every one of those options) and the forward one token at a time."""
    path = _write_tiny_model(tmp_path / "gemma3.gguf", "gemma3", biases=False, tied=True, qk_norm=True,
                             sliding_window=5, n_layers=7, post_norms=True, softcap=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # the C++ step takes it: no fallback warning
        m = pyquant.load(path, max_seq_len=64)
    assert m._step.mode == "native"
    assert [L.local for L in m.layers] == [True] * 5 + [False, True]
    ids = list(range(40, 60))
    ref = ReferenceLlama(path).forward(ids)
    assert float(ref.abs().max()) <= 3.0                 # the cap is in effect
    ours = m.forward(ids, 0, all_logits=True).double()
    assert float((ours - ref).abs().max()) < 1e-3 * float(ref.abs().max())
    m.forward(ids[:-1], 0)
    step = m.step(ids[-1], len(ids) - 1).double()
    assert float((step - ref[-1]).abs().max()) < 1e-3 * float(ref.abs().max())
    one = m.forward([ids[-1]], len(ids) - 1).double()
    assert float((one - ref[-1]).abs().max()) < 1e-3 * float(ref.abs().max())
    # every position through the C++ step (windows sliding past the start, local/global layers)
    steps = torch.stack([m.step(t, p).double().clone() for p, t in enumerate(ids)])
    assert float((steps - ref).abs().max()) < 1e-3 * float(ref.abs().max())


def test_unsupported_architecture(tmp_path):
    from pyquant.formats.gguf import GGUFWriter

    w = GGUFWriter(tmp_path / "x.gguf")
    w.add_field("general.architecture", "mamba")
    w.write()
    with pytest.raises(pyquant.FormatError, match="mamba"):
        pyquant.load(tmp_path / "x.gguf")


def test_python_step_fallback_warns_and_explains(tmp_path, monkeypatch):
    """An architecture the C++ step cannot run gets the Python step with a warning naming the reason
    (it used to fall back silently), and model.explain() says which path and kernels run."""
    from pyquant.models import ARCHITECTURES, _import_families
    from pyquant.models.decoder import DecoderModel

    _import_families()

    class OwnNorm(ARCHITECTURES["llama"]):
        def norm(self, x, weight):   # an override the C++ step does not implement
            return DecoderModel.norm(self, x, weight)

    monkeypatch.setitem(ARCHITECTURES, "llama", OwnNorm)
    path = _write_tiny_model(tmp_path / "llama.gguf", "llama", biases=False, tied=True)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ token step cannot run this model .OwnNorm overrides the norm"):
        m = pyquant.load(path, max_seq_len=32)
    assert m._step.mode == "python"
    text = m.explain(8)
    assert "token step: python" in text and "OwnNorm overrides the norm" in text
    assert "attn_qkv" in text and "output" in text and "gemv" in text
    monkeypatch.setenv("PYQUANT_STEP", "python")
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # asked for: no warning
        assert pyquant.load(path, max_seq_len=32)._step.mode == "python"


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_generic_int4_int8_weights_in_every_path(tmp_path, monkeypatch, fmt, float_activations):
    """A model whose linears hold pyquant's int4 (group 32, AWQ semantics) or int8 weights: QKV and
    gate/up fuse (their scales and mins row-stacked with the rows), the C++ step takes them (no
    fallback), and step, forward and the float reference of the same int4/int8 weights agree."""
    from pyquant.formats.gguf.source import GGUFSource
    from pyquant.qtensor import QTensor

    real = GGUFSource.qtensor

    def as_fmt(self, name, shape):
        qt = real(self, name, shape)
        if name == "token_embd.weight" or len(shape) != 2:
            return qt
        return QTensor.quantize(qt.dequantize(torch.float32), fmt, group_size=32)

    monkeypatch.setattr(GGUFSource, "qtensor", as_fmt)
    path = _write_tiny_model(tmp_path / "llama.gguf", "llama", biases=False, tied=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = pyquant.load(path, max_seq_len=64)
    assert m._step.mode == "native"
    assert len(m.layers[0].qkv) == 1 and m.layers[0].qkv[0].qt.qtype.name == fmt.upper()
    assert len(m.layers[0].gate_up) == 1
    ids = list(range(40, 56))
    fwd = m.forward(ids, 0, all_logits=True).double()
    steps = torch.stack([m.step(t, p).double().clone() for p, t in enumerate(ids)])
    assert float(((steps - fwd).norm(dim=-1) / fwd.norm(dim=-1)).max()) < 1e-4
    one = torch.stack([m.forward([t], p).double() for p, t in enumerate(ids)])
    assert float(((one - fwd).norm(dim=-1) / fwd.norm(dim=-1)).max()) < 1e-4


def test_device_meta_keeps_every_op_on_the_model_device(tmp_path):
    """device= moves the weights (in their own formats), norms, RoPE tables and KV cache, and the
    forward creates nothing elsewhere: on the "meta" device (shapes only, no data) any CPU tensor
    meeting a model tensor raises. This is what a CUDA model runs, minus the kernels: prefill and
    a one-token step through the dispatcher (the reference backend serves meta tensors)."""
    path = _write_tiny_model(tmp_path / "gemma3.gguf", "gemma3", biases=False, tied=True, qk_norm=True,
                             sliding_window=5, n_layers=7, post_norms=True, softcap=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # off the CPU the forward step is expected: no warning
        m = pyquant.load(path, max_seq_len=64, device="meta")
    assert m._step.mode == "python" and "meta" in m._step.native_reason
    tensors = [m.cache.kv, m.rope, m.rope_local, m.embed.qt.data, m.output.qt.data, m.output_norm]
    for L in m.layers:
        tensors += [L.attn_norm, L.ffn_norm, L.q_norm, L.k_norm, L.attn_post_norm, L.ffn_post_norm, L.wo.qt.data,
                    L.down.qt.data] + [lin.qt.data for lin in L.qkv + L.gate_up]
    assert all(t.device.type == "meta" for t in tensors)
    assert m.embed.qt is m.output.qt          # tied: one upload serves the embedding and the head
    logits = m._forward(list(range(40, 60)), 0, True)
    assert logits.device.type == "meta" and logits.shape == (20, 256)
    step = m._forward([7], 20, False)
    assert step.device.type == "meta" and step.shape == (256,)
    # the CUDA-graph step's call: token and position as device tensors
    at = torch.tensor([20], device="meta")
    step = m._forward(torch.tensor([7], device="meta"), at, False)
    assert step.device.type == "meta" and step.shape == (256,)
    assert "device: meta" in m.explain(8) and "reference" in m.explain(8)
    assert "no CUDA graph: the model is on meta" in m.explain(8)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_forward_at_a_device_position_equals_the_forward(tmp_path, arch, float_activations):
    """What the CUDA-graph token step (runtime/graph_step.py) records: the model's forward with the
    position as a tensor (RoPE rows gathered, the KV entry written by index_copy_, attention over the
    whole cache with the positions past it masked) gives the logits of the plain forward at an int
    position, token after token, across gemma3's sliding window (5) and its global layers."""
    kw = dict(biases=False, tied=True, qk_norm=True, sliding_window=5, n_layers=7, post_norms=True,
              softcap=3.0) if arch == "gemma3" else dict(biases=True, tied=False)
    path = _write_tiny_model(tmp_path / f"{arch}.gguf", arch, **kw)
    plain, graphed = pyquant.load(path, max_seq_len=32), pyquant.load(path, max_seq_len=32)
    graphed.cache.kv.zero_()   # as a device cache starts (a CPU one is left unwritten: torch.empty)
    prompt = list(range(40, 52))
    plain.forward(prompt, 0)
    graphed.forward(prompt, 0)
    for pos, tok in enumerate([3, 99, 7, 250, 11, 64, 5, 200], start=len(prompt)):
        want = plain._forward([tok], pos, False)
        got = graphed._forward(torch.tensor([tok]), torch.tensor([pos]), False)
        assert float((got - want).abs().max() / want.abs().max()) < 1e-5, pos
    written = slice(0, pos + 1)
    assert float((graphed.cache.kv[:, :, :, written] - plain.cache.kv[:, :, :, written]).abs().max()) < 1e-5


def test_device_cpu_is_the_default_and_cuda_without_a_gpu_is_refused(tmp_path, float_activations):
    path = _write_tiny_model(tmp_path / "llama.gguf", "llama", biases=False, tied=True)
    ids = list(range(40, 56))
    a = pyquant.load(path, max_seq_len=32).forward(ids, 0, all_logits=True)
    b = pyquant.load(path, max_seq_len=32, device="cpu")
    assert b._step.mode == "native" and torch.equal(a, b.forward(ids, 0, all_logits=True))
    with pytest.raises(pyquant.PyquantError, match="not a torch device"):
        pyquant.load(path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(pyquant.PyquantError, match="no CUDA device"):
            pyquant.load(path, device="cuda")
