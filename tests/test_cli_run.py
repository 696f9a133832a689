"""The runner's command line, end to end in subprocesses (as a user runs it)."""
from __future__ import annotations

import json
from pathlib import Path

from child_process import run_pyquant

DATA = Path(__file__).parent / "data"


_pyquant = run_pyquant


def test_run_capital_of_france(smollm2_path):
    out = _pyquant("run", "smollm2", "-p", "The capital of France is", "-n", "8", "-t", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The capital of France is") and "Paris" in out.stdout
    assert "tok/s" in out.stderr


def test_bench_json(smollm2_path):
    out = _pyquant("bench", "smollm2", "-p", "16", "-n", "4", "-r", "1", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["pp_tok_s"] > 0 and res["tg_tok_s"] > 0
    assert 60e6 < res["weight_bytes_per_token"] < smollm2_path.stat().st_size
    assert abs(res["tg_weight_GB_s"] - res["tg_tok_s"] * res["weight_bytes_per_token"] / 1e9) < 1e-6


def test_ppl_json_two_chunks(smollm2_path):
    out = _pyquant("ppl", "smollm2", str(DATA / "apache-2.0.txt"), "--ctx", "128", "--chunks", "2", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["chunks"] == 2 and res["ctx"] == 128 and res["scored"] == 126
    assert 5 < res["ppl"] < 40


def test_chat_two_turns(smollm2_path):
    # the second turn re-uses the first turn's KV cache (only the new tokens are prefilled)
    out = _pyquant("chat", "smollm2", "-n", "32",
                   stdin="Answer in one word: what is the capital of France?\nAnd of Italy?\n")
    assert out.returncode == 0, out.stderr
    replies = [line for line in out.stdout.splitlines() if line.strip()]
    assert "Paris" in replies[0] and len(replies) >= 2
    assert "<|im_" not in out.stdout


def test_bad_model_path(tmp_path):
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"NOPE" + bytes(60))
    out = _pyquant("run", str(bad), "-p", "hi")
    assert out.returncode == 2 and "GGUF" in out.stderr and "Traceback" not in out.stderr
