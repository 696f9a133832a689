"""A loaded model keeps no view of its file (issue #15): replacing or truncating the file under a
running model (`cp new.gguf model.gguf` truncates, then writes) must not end it with SIGBUS. Each
case runs in a child: a SIGBUS would kill it, and the test sees the signal."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from child_process import child_env, child_python

SCRIPT = r"""
import os, sys, warnings
import pyquant
path = sys.argv[1]
warnings.simplefilter("ignore")
m = pyquant.load(path, max_seq_len=64)
before = m.generate("The capital of France is", max_new_tokens=8, temperature=0)
if os.path.isdir(path):
    for name in os.listdir(path):
        if name.endswith(".safetensors"):
            os.truncate(os.path.join(path, name), 0)
else:
    os.truncate(path, 0)                       # what `cp new.gguf model.gguf` does first
after = m.generate("The capital of France is", max_new_tokens=8, temperature=0)
logits = m.forward(list(range(1, 20)), 0, all_logits=True)
print("same" if before == after else f"DIFFERENT {before!r} {after!r}", float(logits.abs().max()))
"""


def _run(path):
    return subprocess.run(child_python("-c", SCRIPT, str(path)), capture_output=True, text=True,
                          env=child_env(), timeout=300)


def test_gguf_truncated_under_a_loaded_model(tmp_path, smollm2_path):
    copy = tmp_path / "model.gguf"
    shutil.copyfile(smollm2_path, copy)
    r = _run(copy)
    assert r.returncode == 0, f"child ended with {r.returncode} (-7: SIGBUS)\n{r.stderr[-2000:]}"
    assert r.stdout.startswith("same"), r.stdout


def test_awq_directory_truncated_under_a_loaded_model(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import awq_from_float, float_model

    model = float_model(tmp_path / "f", "qwen2")
    awq_from_float(model, tmp_path / "awq", tmp_path / "f", "gemm", 32)
    r = _run(tmp_path / "awq")
    assert r.returncode == 0, f"child ended with {r.returncode} (-7: SIGBUS)\n{r.stderr[-2000:]}"
    assert r.stdout.startswith("same"), r.stdout


def test_packing_is_exact(tmp_path, smollm2_path, monkeypatch):
    """The packed copy (huge pages, step order, fused QKV / gate-up copies larger than one 4 MiB
    copy slice) computes exactly what the file mapping does: a pure Q8_0 SmolLM2, whose gate-up
    copies are 1.9 MB and QKV 0.6 MB, against PYQUANT_PACK_WEIGHTS=0."""
    import torch

    import pyquant
    from pyquant.cli import main

    path = tmp_path / "q8.gguf"
    assert main(["quantize", str(smollm2_path), str(path), "Q8_0", "--pure", "--quiet"]) == 0
    ids = list(range(100, 132))
    packed = pyquant.load(path, max_seq_len=64)
    assert packed.packed_nbytes > 0
    a = packed.forward(ids, 0, all_logits=True)
    monkeypatch.setenv("PYQUANT_PACK_WEIGHTS", "0")
    mapped = pyquant.load(path, max_seq_len=64)
    assert mapped.packed_nbytes == 0
    assert torch.equal(a, mapped.forward(ids, 0, all_logits=True))
