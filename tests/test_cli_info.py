"""`pyquant info`: text and JSON output checked against numbers computed with the gguf package."""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import pytest

from gguf_helpers import DATA
from pyquant.cli import main


def _run(capsys, *argv):
    rc = main(["info", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def oracle(smollm2_path):
    """Per-type tensor counts, elements and bytes of SmolLM2 according to gguf-py."""
    import gguf

    g = gguf.GGUFReader(smollm2_path)
    by_type = defaultdict(lambda: [0, 0, 0])
    for t in g.tensors:
        b = by_type[t.tensor_type.name]
        b[0] += 1
        b[1] += int(t.n_elements)
        b[2] += int(t.n_bytes)
    return dict(by_type)


def test_json_matches_gguf_py(capsys, smollm2_path, oracle):
    rc, out, _ = _run(capsys, str(smollm2_path), "--json")
    assert rc == 0
    s = json.loads(out)
    m = s["model"]
    assert (m["architecture"], m["context_length"], m["embedding_length"], m["block_count"]) == (
        "llama", 8192, 576, 30)
    assert (m["head_count"], m["head_count_kv"], m["head_dim"], m["vocab_size"]) == (9, 3, 64, 49152)
    assert m["rope_freq_base"] == 100000.0 and m["file_type"] == "MOSTLY_Q4_1"
    assert {k: [v["tensors"], v["elements"], v["bytes"]] for k, v in s["by_type"].items()} == oracle
    assert s["by_type"]["Q4_1"]["bits_per_weight"] == 5.0
    assert s["by_type"]["Q8_0"]["bits_per_weight"] == 8.5
    total_bytes = sum(v[2] for v in oracle.values())
    assert s["totals"]["bytes"] == total_bytes and s["totals"]["parameters"] == 134515008
    assert len(s["tensors"]) == 272
    assert s["tensors"][0] == {"name": "token_embd.weight", "type": "Q8_0", "shape": [49152, 576],
                               "nbytes": 30081024}
    # K and V, f16, 30 layers x 3 kv heads x 64 dims, 8192 tokens
    assert s["memory"]["kv_cache_bytes"] == 8192 * 30 * 3 * (64 + 64) * 2
    assert s["memory"]["total_bytes"] == total_bytes + s["memory"]["kv_cache_bytes"]


def test_text_output_by_alias(capsys, smollm2_path):
    rc, out, _ = _run(capsys, "smollm2", "--ctx", "1024")
    assert rc == 0
    assert str(smollm2_path) in out
    for text in ["llama", "context length 8192", "layers 30", "heads 9", "kv heads 3",
                 "vocab 49152", "rope base 100000", "file type MOSTLY_Q4_1", "tensors (272)"]:
        assert text in out, text
    lines = out.splitlines()
    emb = next(line for line in lines if line.strip().startswith("token_embd.weight"))
    assert emb.split() == ["token_embd.weight", "Q8_0", "49152", "x", "576", "30081024"]
    q41 = next(line for line in lines if line.strip().startswith("Q4_1 "))
    assert q41.split()[1:] == ["210", "106168320", "66355200", "5.000"]
    kv_mib = 1024 * 30 * 3 * 128 * 2 / 2**20
    assert f"KV cache (f16, 1024 tokens) {kv_mib:.1f} MiB" in out


def test_metadata_and_no_tensors(capsys):
    rc, out, _ = _run(capsys, str(DATA / "all_types.gguf"), "--metadata", "--no-tensors")
    assert rc == 0
    assert "test.u64 = UINT64: 18446744073709551615" in out
    assert "test.array.string = [STRING] ['a', '', 'ü✓', '<|endoftext|>', 'Ġ t']" in out
    assert "test.array.random_i32 = [INT32]" in out and "(100 items)" in out
    assert "tensors (" not in out
    assert "Q4_K" in out and "4.500" in out


def test_kernels_flag(capsys, monkeypatch):
    import pyquant.dispatch as dispatch

    seen = {}

    def fake_describe(qtypes_=None, **kw):
        seen["qtypes"] = qtypes_
        return "FAKE KERNEL TABLE"

    monkeypatch.setattr(dispatch, "describe", fake_describe)
    rc, out, _ = _run(capsys, str(DATA / "align64.gguf"), "--kernels")
    assert rc == 0 and "FAKE KERNEL TABLE" in out
    assert seen["qtypes"] == ["Q4_1"]     # the 2-D weight types of the file, not its 1-D F32s


def test_kernels_flag_without_dispatch(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyquant.dispatch", None)   # import fails
    monkeypatch.delattr("pyquant.dispatch", raising=False)
    rc, out, _ = _run(capsys, str(DATA / "align64.gguf"), "--kernels", "--json")
    assert rc == 0 and json.loads(out)["kernels"].startswith("kernel dispatch table unavailable")


def test_errors(capsys, tmp_path):
    rc, _, err = _run(capsys, str(tmp_path / "missing.gguf"))
    assert rc == 2 and "no such file, and not a known model alias" in err
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(40))
    rc, _, err = _run(capsys, str(bad))
    assert rc == 2 and f"{bad}: bad magic" in err
