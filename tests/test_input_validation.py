"""Bad input is a pyquant error naming what is wrong (issue #15, first batch): non-regular files,
model hyper-parameters that would make every logit NaN, load / generate / sampling arguments, and the
CLI's numeric flags (one usage line, exit 2, no traceback)."""
from __future__ import annotations

import os
import warnings

import pytest
from child_process import run_pyquant

import pyquant
from pyquant.errors import FormatError, GGUFError, PyquantError
from pyquant.formats.gguf import GGUFReader
from pyquant.runtime.sampling import Sampler
from test_model import _write_tiny_model


def _forged(tmp_path, fields: dict):
    """bad.gguf: a tiny llama whose metadata `fields` are replaced (or added) with the given values."""
    from pyquant.formats.gguf import GGUFWriter

    src = _write_tiny_model(tmp_path / "ok.gguf", "llama", biases=False, tied=True)
    bad = tmp_path / "bad.gguf"
    with GGUFReader(src) as r:
        w = GGUFWriter(bad)
        for k, f in r.fields.items():
            if k not in fields:
                w.add_field(k, f)
        for k, v in fields.items():
            w.add_field(k, v)
        for t in r.tensors.values():
            w.add_tensor(t.name, t.bytes(), t.qtype, t.shape)
        w.write()
    return bad


def test_fifo_and_directory_are_refused_not_blocked(tmp_path):
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError, match="FIFO"):      # open() on a FIFO would block forever
        GGUFReader(fifo)
    with pytest.raises(GGUFError, match="directory"):
        GGUFReader(tmp_path)


@pytest.mark.parametrize("key,value,match", [
    ("rope.freq_base", 0.0, "rope.freq_base' = 0.0 must be finite and > 0"),
    ("rope.freq_base", -10.0, "must be finite and > 0"),
    ("rope.freq_base", float("nan"), "must be finite and > 0"),
    ("rope.scaling.factor", 0.0, "rope.scaling.factor' = 0.0 must be finite and > 0"),
    ("attention.layer_norm_rms_epsilon", -1.0, "layer_norm_rms_epsilon' = -1.0 must be finite and >= 0"),
    ("attention.sliding_window", -3, "sliding_window' = -3 must be >= 0"),
])
def test_bad_hyper_parameters_name_key_and_file(tmp_path, key, value, match):
    bad = _forged(tmp_path, {f"llama.{key}": value})
    with pytest.raises(FormatError, match=match) as e:
        pyquant.load(bad)
    assert "bad.gguf" in str(e.value)


def test_load_and_generate_arguments(tmp_path):
    path = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False, tied=True)
    for bad in (-4, 0, 2.5, True):
        with pytest.raises(PyquantError, match="max_seq_len"):
            pyquant.load(path, max_seq_len=bad)
    with pytest.raises(PyquantError, match="threads"):
        pyquant.load(path, threads=-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pyquant.load(path, max_seq_len=32)
    for prompt in (b"hello", None):
        with pytest.raises(PyquantError, match="prompt must be text"):
            m.generate(prompt, max_new_tokens=2)
    with pytest.raises(PyquantError, match=r"token ids must be in \[0, 256\)"):
        m.generate([1, 2, 999], max_new_tokens=2)
    for n in (2.5, -1, "3"):
        with pytest.raises(PyquantError, match="max_new_tokens"):
            m.generate([1, 2], max_new_tokens=n)
    assert isinstance(m.generate([1, 2], max_new_tokens=0), str)


@pytest.mark.parametrize("kw", [{"temperature": float("nan")}, {"temperature": -1.0}, {"top_p": float("nan")},
                                {"top_k": -1}, {"top_k": 1.5}, {"seed": 2 ** 63}, {"seed": -1},
                                {"repeat_penalty": float("inf")}, {"repeat_last_n": -1}])
def test_sampler_arguments(kw):
    with pytest.raises(PyquantError):
        Sampler(**kw)


@pytest.mark.parametrize("argv", [
    ["run", "smollm2", "-p", "x", "-c", "-4"], ["run", "smollm2", "-p", "x", "-t", "-2"],
    ["run", "smollm2", "-p", "x", "-n", "-1"], ["bench", "smollm2", "-r", "0"],
    ["ppl", "smollm2", "f.txt", "--chunks", "-1"], ["ppl", "smollm2", "f.txt", "-c", "0"],
    ["kernels", "--op", "nope"],
])
def test_cli_numbers_are_usage_errors(argv):
    out = run_pyquant(*argv, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "invalid" in out.stderr.splitlines()[-1], out.stderr


def test_quantize_destination_checked_before_work(tmp_path):
    """`pyquant quantize` into a missing directory or onto a directory fails at once with one line
    (it used to write a full temporary copy first), and a dead writer's temp file is cleaned up."""
    src = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False, tied=True)

    def run(out):
        return run_pyquant("quantize", str(src), str(out), "Q8_0", "-q", timeout=120)

    r = run(tmp_path / "nosuch" / "o.gguf")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (tmp_path / "adir").mkdir()
    r = run(tmp_path / "adir")
    assert r.returncode == 2 and "is a directory" in r.stderr, r.stderr
    stale = tmp_path / ".o.gguf.999999.tmp"            # left by a killed writer (no such pid)
    stale.write_bytes(b"x" * 1000)
    r = run(tmp_path / "o.gguf")
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and (tmp_path / "o.gguf").stat().st_size > 0


@pytest.mark.parametrize("forge", [
    {"llama.block_count": 2 ** 29},                      # was 108 s and 4.2 GB (a per-layer list)
    {"llama.block_count": 2 ** 62},                      # was a MemoryError traceback
    {"llama.attention.head_count": "eight"},
    {"llama.context_length": "4096"},
    {"general.name": ["a", "b"]},
    {"general.quantization_version": [2, 2]},
    {"llama.attention.layer_norm_rms_epsilon": float("nan")},
])
def test_info_on_wrong_typed_metadata(tmp_path, forge):
    """`pyquant info` (text and --json) on forged metadata: exit 0, the problem named, strict JSON."""
    import json

    bad = _forged(tmp_path, forge)
    key = next(iter(forge)).split(".", 1)[1] if next(iter(forge)).startswith("llama.") else next(iter(forge))
    named = key not in ("general.name",) and forge != {"llama.block_count": 2 ** 29}   # 2^29 is a count: no problem, just no 4 GB
    for extra in ([], ["--json"]):
        out = run_pyquant("info", str(bad), *extra, timeout=60)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        if extra:
            info = json.loads(out.stdout)      # strict: NaN would not parse as JSON elsewhere
            assert "NaN" not in out.stdout
            if named:
                assert any(key in p for p in info["model"].get("problems", [])), info["model"]
        elif named:
            assert f"metadata problem: {key}" in out.stdout, out.stdout


def test_weight_storage_replaced_in_place():
    """qt.data.set_(...) after a CPU matmul: the cached _C.Weight is rebuilt,
    not reused (they read the old storage: values up to 57 where 0 was right)."""
    import torch

    w = torch.randn(64, 256)
    qt = pyquant.QTensor.quantize(w, "Q8_0")
    x = torch.randn(1, 256)
    before = pyquant.qmatmul(x, qt)
    from pyquant.kernels.cpu.matmul import linear_into

    out = torch.empty(1, 64)
    linear_into(x, qt, out)
    assert torch.allclose(out, before)
    qt.data.set_(torch.zeros_like(qt.data))               # same tensor object, new storage: all-zero blocks
    linear_into(x, qt, out)
    assert torch.equal(out, torch.zeros(1, 64))
