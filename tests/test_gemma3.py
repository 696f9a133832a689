"""A real Gemma 3 model (270M, Q4_K_M, fetched from PyPI's chunk packages, sha256-checked) against
llama.cpp's own figures for the same file, measured once on this project's machine
(llama-cpp-python 0.3.36's vendored llama.cpp, 2026-12-06):

- `llama-tokenize -f tests/data/apache-2.0.txt --ids`: 2322 ids (digest below);
- `llama-perplexity -c 128` on the file dequantized to F32 (llama.cpp's float forward of these
  weights): 11.4811 over 18 chunks. Two float32 forwards of the same weights differ by summation
  order: ~1e-5 relative in the logits, ~1e-4 in perplexity; bound 5e-4 relative (pyquant: 11.4806).

And against tests/reference_llama.py (gguf-py's dequantization, separately written) on a prompt.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

import pyquant
from reference_llama import ReferenceLlama

TEXT = Path(__file__).parent / "data" / "apache-2.0.txt"
LLAMA_TOKENS = (2322, "ac9864568db9db9265922ba1004b16ca2d0aa7eeefec771af0f495680cbad0f3",
                [2, 167, 138, 69534, 11440, 107, 163, 9038, 236743, 236778, 236761, 236771])
LLAMA_PPL_128 = 11.4811


@pytest.fixture(scope="module")
def gemma3_path():
    return pyquant.hub.fetch("gemma3-270m")


@pytest.fixture(scope="module")
def model(gemma3_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no fallback warning: the C++ step runs gemma3
        m = pyquant.load(gemma3_path, max_seq_len=128)
    assert m._step.mode == "native"
    return m


def test_tokens_equal_llama_cpp(model):
    ids = model.tokenizer.encode(TEXT.read_text(encoding="utf-8"), parse_special=False)
    n, digest, head = LLAMA_TOKENS
    assert ids[:len(head)] == head           # BOS, then whitespace runs as single user-defined tokens
    assert len(ids) == n and hashlib.sha256(json.dumps(ids).encode()).hexdigest() == digest


def test_perplexity_equals_llama_cpp_float(model, act):
    act("float")   # prefill chunks of 128 rows take the float GEMM anyway; this pins it
    from pyquant.runtime.perplexity import perplexity

    r = perplexity(model, TEXT.read_text(encoding="utf-8"), ctx=128)
    assert r.n_chunks == 18
    assert abs(r.ppl / LLAMA_PPL_128 - 1) < 5e-4, r.ppl


def test_logits_equal_independent_reference(model, gemma3_path, act):
    act("float")
    ids = model.tokenizer.encode("The capital of France is Paris, and the capital of Germany is")
    ref = ReferenceLlama(gemma3_path, dtype=torch.float32).forward(ids)
    ours = model.forward(ids, 0, all_logits=True)
    assert float((ours - ref).abs().max()) < 1e-3 * float(ref.abs().max())
    assert model.tokenizer.token_text(int(ours[-1].argmax())) == "\u2581Berlin"


def test_cpp_step_equals_forward(model, act):
    """The C++ step on the real model (18 layers: 15 local with the 512 window and RoPE base 1e4,
    3 global with 1e6; QK-norm, post-norms, GELU-tanh, embedding scale) against the forward, token by
    token, float activations: the same float32 function up to summation order."""
    act("float")
    ids = model.tokenizer.encode("The capital of France is Paris, and the capital of Germany is")
    ref = model.forward(ids, 0, all_logits=True).double()
    steps = torch.stack([model.step(t, p).double().clone() for p, t in enumerate(ids)])
    assert float(((steps - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
