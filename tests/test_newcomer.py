"""A newcomer's first hour (issue #9): what the README's first commands show, the CLI's errors, and
the discoverability of the Python API. Subprocesses run the CLI as a user does."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from child_process import run_pyquant

import pyquant
from pyquant.runtime.sampling import DEFAULTS, Sampler

DATA = Path(__file__).parent / "data"
README_PROMPT = "The capital of France is"


_pyquant = run_pyquant


def _one_line_error(out, *needles):
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pyquant: error:"), out.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ---------------------------------------------------------------- CLI errors: one line, exit 2
def test_ppl_missing_text_file(tmp_path):
    missing = tmp_path / "nosuch.txt"
    _one_line_error(_pyquant("ppl", "smollm2", str(missing)), str(missing), "no such file")


def test_ppl_text_not_utf8(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    _one_line_error(_pyquant("ppl", "smollm2", str(bad)), str(bad), "not UTF-8", "0xe9")


def test_missing_model_file(tmp_path):
    _one_line_error(_pyquant("run", str(tmp_path / "nosuch.gguf"), "-p", "hi"), "nosuch.gguf", "no such file")
    _one_line_error(_pyquant("run", str(tmp_path), "-p", "hi"), "no config.json", "neither a GGUF file nor a model directory")


def test_ppl_accepts_llama_perplexity_ctx_flag(smollm2_path):
    out = _pyquant("ppl", "smollm2", str(DATA / "apache-2.0.txt"), "-c", "128", "--chunks", "1", "--json")
    assert out.returncode == 0, out.stderr
    assert '"ctx": 128' in out.stdout


def test_version():
    out = _pyquant("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"pyquant {pyquant.__version__}"


# ---------------------------------------------------------------- no silent cuts
def test_run_says_when_the_context_is_full(smollm2_path):
    out = _pyquant("run", "smollm2", "-p", README_PROMPT, "-n", "20", "-c", "8", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "the context is full (8 positions)" in out.stderr and "-c/--ctx-size" in out.stderr


def test_quantize_explains_types_fallbacks_and_size(smollm2_path, tmp_path):
    out = _pyquant("quantize", "smollm2", str(tmp_path / "o.gguf"), "Q4_K_M", "--dry-run")
    assert out.returncode == 0, out.stderr
    # SmolLM2's rows are 576 wide: no 256-value K-quant block fits, llama.cpp falls back to Q5_0
    assert re.search(r"\d+ tensor\(s\) Q4_K -> Q5_0: rows of 576 values are not a multiple of Q4_K's 256",
                     out.stderr), out.stderr
    m = re.search(r"bits per weight: ([\d.]+) -> ([\d.]+) \(.*(larger|smaller) than the source", out.stderr)
    assert m and float(m.group(2)) > float(m.group(1)) and m.group(3) == "larger", out.stderr


# ---------------------------------------------------------------- first outputs
def test_readme_prompt_ends_cleanly_by_default(smollm2_path):
    """The README's first command: greedy, stops at the end-of-text token well before 128 tokens,
    and no sentence comes back (it printed one sentence 7 times before int8x2 was the default)."""
    m = pyquant.load(smollm2_path, max_seq_len=256)
    from pyquant.runtime.generate import GenerationStats

    stats = GenerationStats()
    text = m.generate(README_PROMPT, stats=stats)
    assert stats.stop_reason == "eog" and stats.generated_tokens < DEFAULTS.max_new_tokens, (stats, text)
    assert "Paris" in text
    sentences = [s.strip() for s in re.split(r"[.!?\n]", text) if len(s.strip()) > 8]
    assert len(sentences) == len(set(sentences)), text


def test_chat_answers_the_capital_of_france(smollm2_path):
    out = _pyquant("chat", "smollm2", "-n", "24", stdin="What is the capital of France?\n")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout.splitlines()[0], out.stdout


def test_one_set_of_sampling_defaults():
    import inspect

    from pyquant.cli import build_parser
    from pyquant.runtime.generate import generate

    from pyquant.runtime.sampling import sampler_for

    # generate() and the CLI leave every sampling parameter unset (None) and resolve it in one place:
    # the model's generation_config.json (directories), else DEFAULTS
    sig = inspect.signature(generate).parameters
    for name in ("temperature", "top_k", "top_p", "repeat_penalty", "repeat_last_n", "max_new_tokens"):
        assert sig[name].default is None, name
    args = build_parser().parse_args(["run", "smollm2", "-p", "x"])
    assert (args.temp, args.top_k, args.top_p, args.repeat_penalty, args.repeat_last_n) == (None,) * 5
    s = sampler_for(object())
    assert (s.temperature, s.top_k, s.top_p) == (DEFAULTS.temperature, DEFAULTS.top_k, DEFAULTS.top_p)


def test_repeat_penalty_is_llama_cpps():
    s = Sampler(repeat_penalty=2.0, repeat_last_n=3)
    logits = torch.tensor([4.0, -4.0, 1.0, 3.0, 0.5])
    for t in (0, 1, 1, 4):          # window of 3: 1, 1, 4 (0 dropped out)
        s.accept(t)
    out = s.penalize(logits)
    assert torch.equal(out, torch.tensor([4.0, -8.0, 1.0, 3.0, 0.25]))   # positive / 2, negative * 2
    assert torch.equal(logits, torch.tensor([4.0, -4.0, 1.0, 3.0, 0.5]))  # the caller's buffer untouched
    assert Sampler(repeat_penalty=1.1)(torch.tensor([1.0, 5.0, 4.9])) == 1   # greedy, nothing recent
    s2 = Sampler(repeat_penalty=1.1)
    s2.accept(1)
    assert s2(torch.tensor([1.0, 5.0, 4.9])) == 2                         # 5 / 1.1 < 4.9
    with pytest.raises(pyquant.PyquantError):
        Sampler(repeat_penalty=0)


# ---------------------------------------------------------------- discoverability
def test_api_is_discoverable():
    names = dir(pyquant)
    for n in ("load", "quantize", "dequantize", "qmatmul", "QTensor", "set_num_threads", "hub"):
        assert n in names, n
    assert "load(" in pyquant.__doc__ and "qmatmul" in pyquant.__doc__
    assert pyquant.QType.__doc__ and "GGUF" in pyquant.QType.__doc__
    assert pyquant.set_num_threads.__doc__


def test_bench_flags_have_help():
    out = _pyquant("bench", "--help")
    for flag in ("-p N_PROMPT", "-n N_GEN", "-r REPETITIONS", "--json"):
        line = next(ln for ln in out.stdout.splitlines() if flag in ln)
        text = out.stdout.split(flag, 1)[1].split("\n  -", 1)[0]
        assert len(text.strip()) > 10, (flag, line)


def test_kernels_says_why_gpu_backends_are_missing():
    out = _pyquant("kernels", "--qtype", "Q4_K")
    assert out.returncode == 0, out.stderr
    if not torch.cuda.is_available():
        assert "cuda: not listed:" in out.stdout and "triton: not listed:" in out.stdout


def test_run_verbose_explains_the_paths(smollm2_path):
    out = _pyquant("run", "smollm2", "-p", README_PROMPT, "-n", "2", "-v")
    assert out.returncode == 0, out.stderr
    assert "token step: native" in out.stderr and "avx2/gemv-int8x2" in out.stderr, out.stderr
