"""EXL2: the writer against a second reader written separately from the spec (numpy, word by word),
the exact repack into the mixed-width blocks the CPU kernels read (and into one ggml type for other
devices), the kernels with the act-order permutation on every path, the runner against transformers'
float forward, and forged tensors."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import pyquant
from pyquant.errors import FormatError
from pyquant.formats.exl2 import layouts, native, reader, writer

LAYOUTS = [([4], [1.0], {4: 128}), ([8, 4], [0.1, 0.9], {8: 32, 4: 64}), ([6, 3, 2], [0.1, 0.3, 0.6], {6: 32, 3: 64, 2: 32}),
           ([5, 4], [0.5, 0.5], {5: 64, 4: 64}), ([3, 2], [0.3, 0.7], {3: 32, 2: 16}), ([8], [1.0], {8: 32}),
           ([6], [1.0], {6: 128}), ([8, 6, 5], [0.1, 0.2, 0.7], {8: 32, 6: 32, 5: 32})]


def second_reader(t: dict, n: int, k: int) -> np.ndarray:
    """ExLlamaV2's format read independently (shared/specs/exl2.md B.2-B.5), element by element in
    numpy: per group, row r of a column is bits [r b, r b + b) of the column's word stream (value
    crossing a word boundary: low bits from one word, high bits from the next). Returns W [N, K] fp16."""
    qw = t["q_weight"].numpy().view(np.uint32)
    pairs = t["q_groups"].numpy().astype(np.int64).reshape(-1, 2)
    qs = t["q_scale"].numpy().view(np.uint32)
    qsm = t["q_scale_max"].numpy()
    inv = t["q_invperm"].numpy().astype(np.int64)
    perm = np.argsort(inv)
    out = np.zeros((k, n), np.float16)
    row = 0
    for g, (bits, q0) in enumerate(pairs):
        nxt = pairs[g + 1][1] if g + 1 < len(pairs) else qw.shape[0]
        rows = (nxt - q0) * 32 // bits if g + 1 < len(pairs) else k - row
        maxp = np.float16(qsm[g]) * np.float16(1 / 256)
        for col in range(n):
            code = (int(qs[g, col // 8]) >> (4 * (col % 8))) & 15
            scale = np.float16(np.float16((code + 1) ** 2) * maxp)
            for r in range(rows):
                bit = r * bits
                word, sh = q0 + bit // 32, bit % 32
                v = int(qw[word, col]) >> sh
                if sh + bits > 32:
                    v |= int(qw[word + 1, col]) << (32 - sh)
                q = v & ((1 << bits) - 1)
                out[row + r, col] = np.float16(np.float16(q - (1 << (bits - 1))) * scale)
        row += rows
    w = np.zeros_like(out)
    w[perm] = out
    return w.T


@pytest.mark.parametrize("spec", LAYOUTS, ids=lambda s: "-".join(map(str, s[0])))
@pytest.mark.parametrize("chunk", [4096, 16], ids=["whole", "columns-in-chunks"])
def test_writer_reader_and_independent_reader_agree_bit_for_bit(spec, chunk, monkeypatch):
    """The writer's output, pyquant's reader and an independent numpy reader agree bit for bit, also
    when the reader decodes the columns a chunk at a time (as it does for wide tensors, to bound its
    transient memory), the last chunk partial (40 = 16 + 16 + 8)."""
    monkeypatch.setattr(layouts, "_COLUMNS", chunk)
    n, k = 40, 256
    g = torch.Generator().manual_seed(1)
    w = torch.randn(n, k, generator=g)
    groups = writer.layout(k, *spec)
    t, recon = writer.encode_linear(w, groups, torch.randperm(k, generator=g))
    c = layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS))
    assert [(gr.bits, gr.rows) for gr in c.groups] == groups
    ours = layouts.dequantize(c, torch.float16)
    assert torch.equal(ours, recon)                          # the writer's own fake-quant
    assert np.array_equal(ours.numpy().view(np.uint16), second_reader(t, n, k).view(np.uint16))
    assert float((ours.float() - w).norm() / w.norm()) < 0.4  # it is a quantization of w


@pytest.mark.parametrize("spec", LAYOUTS, ids=lambda s: "-".join(map(str, s[0])))
def test_repack_in_row_chunks_is_the_same_bytes(spec, monkeypatch):
    """The packers work on output rows a chunk at a time (to bound a wide lm_head's transient
    memory): with 48 = 16 + 16 + 16 ... and 40 = 16 + 16 + 8 rows per chunk of 16 the blocks are
    byte for byte those of one whole pass, mixed widths and single type alike."""
    for n in (48, 40):
        k = 256
        g = torch.Generator().manual_seed(3)
        t, _ = writer.encode_linear(torch.randn(n, k, generator=g), writer.layout(k, *spec),
                                    torch.randperm(k, generator=g))
        c = layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS))
        whole = reader.to_qtensor(c, n, k)
        single = whole.single_type()
        monkeypatch.setattr(native, "_ROWS", 16)
        chunked = reader.to_qtensor(c, n, k)
        single_chunked = chunked.single_type()
        monkeypatch.undo()
        assert whole.qtype == chunked.qtype and torch.equal(whole.data, chunked.data)
        assert single.qtype == single_chunked.qtype and torch.equal(single.data, single_chunked.data)


@pytest.mark.parametrize("spec", LAYOUTS, ids=lambda s: "-".join(map(str, s[0])))
@pytest.mark.parametrize("layout", ["native", "single"])
def test_repack_is_exact_and_kernels_absorb_the_permutation(spec, layout, act, monkeypatch):
    """The mixed-width QTensor (and its single-type repack) dequantizes to ExLlamaV2's fp16
    reconstruction bit for bit; its matmul (qmatmul and the runner's direct CPU path, M = 1, 3, 40) is
    within float rounding of the exact weights with float activations and within int8x2's bound with
    the default."""
    from pyquant.kernels.cpu.matmul import linear_into

    n, k = 48, 256
    g = torch.Generator().manual_seed(2)
    t, _ = writer.encode_linear(torch.randn(n, k, generator=g), writer.layout(k, *spec),
                                torch.randperm(k, generator=g))
    c = layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS))
    monkeypatch.setenv("PYQUANT_EXL2_LAYOUT", layout)
    qt = reader.to_qtensor(c, n, k)
    assert qt.qtype.name == ("F16" if reader.exact_type(c.groups) is None else
                             "EXL2" if layout == "native" else reader.exact_type(c.groups))
    assert torch.equal(qt.dequantize(torch.float16), layouts.dequantize(c, torch.float16))
    assert torch.equal(pyquant.dequantize(qt, dtype=torch.float16), layouts.dequantize(c, torch.float16))
    if qt.qtype.name != "F16":   # block types hold the exact products; the fp16 fallback their rounding
        assert torch.equal(qt.dequantize(torch.float32), layouts.dequantize(c, torch.float32))
        single = qt.single_type()
        assert single.qtype.name == reader.exact_type(c.groups)
        assert torch.equal(single.dequantize(torch.float32), layouts.dequantize(c, torch.float32))
    w = qt.dequantize(torch.float64)
    # int8x2 rounds each activation to ~15 bits of its 32-block's max (2^-15 = 3e-5 relative)
    for mode, bound in (("float", 1e-6), ("int8x2", 1e-4)):
        act(mode)
        for m in (1, 3, 40):
            x = torch.randn(m, k, generator=g)
            ref = x.double() @ w.t()
            for y in (pyquant.qmatmul(x, qt), linear_into(x, qt, torch.empty(m, n))):
                assert float((y.double() - ref).norm() / ref.norm()) < bound, (mode, m)


def test_auto_layout_keeps_the_widths_where_they_save_a_fifth(monkeypatch):
    """auto: the mixed widths when they read <= 0.8 of the single type's bytes ([3, 2] bits: 11.6 vs
    Q4_0's 18 bytes a block; [8, 4]: 19.6 vs Q8_0's 34), else the single type ([4]: Q4_0 itself;
    [5, 4]: 20 vs Q5_0's 22). The default keeps the widths."""
    n, k = 16, 256
    t, _ = writer.encode_linear(torch.randn(n, k), writer.layout(k, *LAYOUTS[3]), torch.randperm(k))
    assert reader.to_qtensor(layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS)), n, k).qtype.name == "EXL2"
    monkeypatch.setenv("PYQUANT_EXL2_LAYOUT", "auto")
    for spec, want in ((LAYOUTS[4], "F16"), (LAYOUTS[0], "Q4_0"), (LAYOUTS[3], "Q5_0"), (LAYOUTS[1], "EXL2"),
                       (LAYOUTS[2], "EXL2"), (([3, 2], [0.5, 0.5], {3: 32, 2: 32}), "EXL2")):
        t, _ = writer.encode_linear(torch.randn(n, k), writer.layout(k, *spec), torch.randperm(k))
        qt = reader.to_qtensor(layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS)), n, k)
        assert qt.qtype.name == want, spec


def test_types_chosen_by_the_widest_group():
    k = 256
    for spec, want in ((LAYOUTS[0], "Q4_0"), (LAYOUTS[3], "Q5_0"), (LAYOUTS[1], "Q8_0"), (LAYOUTS[4], None)):
        gr = [layouts.Group(b, 0, r, 0) for b, r in writer.layout(k, *spec)]
        row = 0
        for i, x in enumerate(gr):
            gr[i] = x._replace(row0=row)
            row += x.rows
        assert reader.exact_type(gr) == want


# ------------------------------------------------------------------ the runner
@pytest.mark.parametrize("layout", ["single", "native"])
@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_exl2_directory_runs_like_transformers(tmp_path, family, layout, float_activations, monkeypatch):
    """pyquant.load(EXL2 dir): mixed 8/6/5/4/3/2-bit layouts with act-order (a quantized lm_head
    too); logits within 1e-4 of transformers' float forward of the exact dequantized weights, the C++
    step taking the model, and 16 equal greedy tokens."""
    monkeypatch.setenv("PYQUANT_EXL2_LAYOUT", layout)
    pytest.importorskip("transformers")
    from hf_models import exl2_from_float, float_model

    from pyquant.runtime.generate import generate_tokens
    from pyquant.runtime.sampling import Sampler

    model = float_model(tmp_path / "f", family)
    oracle = exl2_from_float(model, tmp_path / "e", tmp_path / "f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = pyquant.load(tmp_path / "e", max_seq_len=64)
    assert m._step.mode == "native"
    assert m.output.qt.in_perm is not None and m.layers[0].qkv[0].qt.in_perm is not None
    formats = {lin.qt.qtype.name for layer in m.layers for v in vars(layer).values()
               for lin in (v if isinstance(v, list) else [v]) if getattr(lin, "qt", None) is not None}
    assert ("EXL2" in formats) == (layout == "native"), formats
    ids = [1, 5, 9, 33, 70, 100, 200, 250, 7, 8, 90, 91, 92, 93, 94, 95]
    with torch.no_grad():
        ref = oracle(torch.tensor([ids])).logits[0].double()
    got = m.forward(ids, 0, all_logits=True).double()
    assert float(((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
    steps = torch.stack([m.step(t, p).double().clone() for p, t in enumerate(ids)])
    assert float(((steps - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
    prompt, seq = ids[:6], list(ids[:6])
    with torch.no_grad():
        for _ in range(16):
            seq.append(int(oracle(torch.tensor([seq])).logits[0, -1].argmax()))
    m.tokenizer.eog_ids = frozenset()
    assert list(generate_tokens(m, prompt, 16, Sampler(temperature=0.0))) == seq[len(prompt):]


@pytest.fixture
def exl2_dir(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import exl2_from_float, float_model

    model = float_model(tmp_path / "f", "llama")
    exl2_from_float(model, tmp_path / "e", tmp_path / "f")
    return tmp_path / "e"


def _forge(d, name, value):
    from hf_models import forge_tensor

    forge_tensor(d / "output.safetensors", name, value)


P = "model.layers.0.self_attn.o_proj"


@pytest.mark.parametrize("name,value,message", [
    (P + ".q_groups", lambda g: torch.tensor([7, 0], dtype=torch.int16), r"q_groups.*7 bits"),
    (P + ".q_groups", lambda g: torch.tensor([2, 0, 4, 8], dtype=torch.int16), r"q_groups.*must not increase"),
    (P + ".q_groups", lambda g: torch.tensor([4, 1], dtype=torch.int16), r"q_groups.*starts at q_weight row 1"),
    (P + ".q_groups", lambda g: torch.tensor([4, 0, 4, 3], dtype=torch.int16), r"q_scale.*must be"),
    (P + ".q_invperm", lambda p: torch.zeros_like(p), r"q_invperm.*not a permutation"),
    (P + ".q_invperm", lambda p: p[:-1], r"q_invperm.*must be"),
    (P + ".q_weight", lambda w: w[:-1], r"q_weight"),
    (P + ".q_scale", lambda s: s[:, :-1], r"q_scale.*must be"),
    (P + ".q_scale_max", lambda s: torch.full_like(s, float("nan")), r"q_scale_max.*NaN"),
    (P + ".q_scale_max", None, r"q_scale_max.*missing"),
])
def test_forged_exl2_tensors_raise_format_error(exl2_dir, name, value, message):
    _forge(exl2_dir, name, value)
    with pytest.raises(FormatError, match=message):
        pyquant.load(exl2_dir)


def test_stale_index_is_ignored(exl2_dir):
    """EXL2 repos copy the original model's shard index, naming files that do not exist: the shards
    are read from their own headers."""
    (exl2_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}))
    assert pyquant.load(exl2_dir, max_seq_len=16).output.qt.in_perm is not None


def test_info_describes_an_exl2_directory(exl2_dir, capsys):
    from pyquant.cli import main

    assert main(["info", str(exl2_dir)]) == 0
    out = capsys.readouterr().out
    assert "exl2" in out and "bits" in out and "8/6" in out and "read (native layout)" in out


def test_quantlinear_keeps_the_permutation():
    """A QuantLinear built from an act-order QTensor registers the permutation as a buffer and gathers
    x through it (state_dict round trip included)."""
    from pyquant.nn import QuantLinear

    n, k = 40, 128
    g = torch.Generator().manual_seed(3)
    t, _ = writer.encode_linear(torch.randn(n, k, generator=g), writer.layout(k, *LAYOUTS[1]),
                                torch.randperm(k, generator=g))
    qt = reader.to_qtensor(layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS)), n, k)
    mod = QuantLinear(qt)
    assert "in_perm" in mod.state_dict()
    x = torch.randn(3, k, generator=g)
    ref = x.double() @ qt.dequantize(torch.float64).t()
    assert float((mod(x).double() - ref).norm() / ref.norm()) < 1e-4
    assert torch.equal(mod.qweight_tensor.in_perm, qt.in_perm)


# ------------------------------------------------------------------ the converter
def test_gptq_beats_round_to_nearest_on_its_own_objective():
    """GPTQ's output error tr(E H E^T) on correlated inputs is below round-to-nearest's at the same
    layout and act-order (the point of error feedback), and both decode through the EXL2 reader."""
    from pyquant.quantizers.exl2 import gptq, reconstruct, rel_error

    g = torch.Generator().manual_seed(5)
    n, k = 64, 256
    w = torch.randn(n, k, generator=g)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    x = torch.randn(2048, k, generator=g) @ mix
    H = x.t() @ x / x.shape[0]
    groups = writer.layout(k, [4, 3], [0.5, 0.5], {4: 64, 3: 64})
    perm = torch.argsort(torch.diagonal(H), descending=True)
    codes, scodes, qsms, sc = gptq(w, H, groups, perm)
    wq = reconstruct(codes, sc, groups, perm, n)
    _, rtn = writer.encode_linear(w, groups, perm)
    e_gptq, e_rtn = rel_error(w, wq, H), rel_error(w, rtn.float(), H)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    t = writer.pack_linear(codes, scodes, qsms, groups, perm)
    c = layouts.unpack("t", "p", n, k, *(t[x] for x in reader.TENSORS))
    assert torch.equal(layouts.dequantize(c, torch.float32), wq)


def test_allocation_meets_the_budget_and_buys_the_best_error():
    from pyquant.quantizers.exl2 import allocate

    cands = {"a": [(100, 10.0), (200, 4.0), (300, 3.5)], "b": [(100, 10.0), (200, 9.0), (300, 1.0)]}
    assert allocate(cands, 200) == {"a": 0, "b": 0}
    assert allocate(cands, 300) == {"a": 1, "b": 0}       # 6 per 100 bits beats 1 (b's first step)
    assert allocate(cands, 600) == {"a": 2, "b": 2}
    choice = allocate(cands, 450)
    assert sum(cands[k][i][0] for k, i in choice.items()) <= 450


def test_exl2_converter_end_to_end(tmp_path):
    """`pyquant exl2` on a tiny float model: ExLlamaV2's layout, the target met, the result loads and
    runs natively, and more bits give logits closer to the float model's."""
    pytest.importorskip("transformers")
    from hf_models import float_model

    from pyquant.cli import main

    model = float_model(tmp_path / "f", "llama", seed=3, outliers=True).float()
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat. Paris is the capital of France. " * 200)
    ids = list(range(3, 300, 12))[:24]
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    kls = []
    for bits in (3.0, 5.0):
        out = tmp_path / f"e{bits}"
        again = ["-m", str(tmp_path / "e3.0" / "measurement.json")] if bits == 5.0 else []   # reused
        assert main(["exl2", str(tmp_path / "f"), str(out), "--bits", str(bits), "--calib", str(calib),
                     "--seq-len", "64", "--blocks", "8", *again]) == 0
        q = json.loads((out / "config.json").read_text())["quantization_config"]
        assert q["quant_method"] == "exl2" and q["bits"] == bits and q["head_bits"] == 6
        rep = json.loads((out / "exl2_report.json").read_text())
        lin = [v for k, v in rep.items() if k != "lm_head"]
        assert len(lin) == 14 and all(list(v["bits"]) == sorted(v["bits"], reverse=True) for v in lin)
        m = pyquant.load(out, max_seq_len=64)
        assert m._step.mode == "native"
        got = torch.log_softmax(m.forward(ids, 0, all_logits=True).double(), -1)
        kls.append(float((ref.exp() * (ref - got)).sum(-1).mean()))
    assert kls[1] < kls[0], kls
    m = json.loads((tmp_path / "e3.0" / "measurement.json").read_text())
    m["options"] = m["options"][1:]
    (tmp_path / "stale.json").write_text(json.dumps(m))
    assert main(["exl2", str(tmp_path / "f"), str(tmp_path / "x"), "-m", str(tmp_path / "stale.json")]) == 2
