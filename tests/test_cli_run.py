"""The runner's command line, end to end in subprocesses (as a user runs it)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

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


def test_device_flag(smollm2_path):
    """--device cpu is the default path; an unknown device is a usage error and cuda on a machine
    without one a one-line error naming what torch sees, never a traceback."""
    out = _pyquant("run", "smollm2", "--device", "cpu", "-p", "The capital of France is", "-n", "4")
    assert out.returncode == 0 and "Paris" in out.stdout, out.stderr
    out = _pyquant("run", "smollm2", "--device", "meta", "-p", "hi")
    assert out.returncode == 2 and "expected cpu, cuda or cuda:N" in out.stderr
    import torch

    if not torch.cuda.is_available():
        out = _pyquant("bench", "smollm2", "--device", "cuda", "-p", "4", "-n", "2")
        assert out.returncode != 0 and "no CUDA device" in out.stderr and "Traceback" not in out.stderr


def test_compare_on_smollm2_versions(tmp_path, smollm2_path):
    """`pyquant compare`: a model against itself gives KLD 0 and 100% same top token; KLD grows as
    bits fall (Q8_0 < Q4_0 < Q2_K); the JSON rows keep their keys; each row's peak RSS is its own."""
    from pyquant.cli import main

    paths = []
    for t in ("Q8_0", "Q4_0"):
        out = tmp_path / f"{t}.gguf"
        assert main(["quantize", str(smollm2_path), str(out), t, "--pure", "--quiet"]) == 0
        paths.append(str(out))
    paths.append(f"{smollm2_path}:Q2_K")      # a recipe, built into $PYQUANT_CACHE/compare once
    from pyquant.runtime.compare import as_dicts, compare

    text = (Path(__file__).parent / "data" / "apache-2.0.txt").read_text()
    rows = compare([str(smollm2_path), *paths], text, ctx=128, max_chunks=2)
    assert rows[0].kld_mean == 0.0 and rows[0].same_top1 == 1.0
    kld = [r.kld_mean for r in rows[1:]]
    assert kld[0] < kld[1] < kld[2], kld
    assert abs(rows[2].file_bpw - 4.5) < 1e-6 and rows[2].format == "gguf Q4_0"
    assert list(as_dicts(rows)[0]) == ["model", "format", "size_mib", "file_bpw", "read_bpw", "ppl", "kld_mean",
                                       "kld_p99", "same_top1", "prompt_tok_s", "gen_tok_s", "peak_rss_mib",
                                       "scored"]
    # peak RSS per model, counted from each model's load: the 138 MB Q8_0 needs more than the Q2_K
    assert all(r.peak_rss_mib > r.size_mib for r in rows) and rows[1].peak_rss_mib > rows[3].peak_rss_mib
    assert json.loads(json.dumps(as_dicts(rows)))[3]["ppl"] > rows[1].ppl
    assert rows[3].model.endswith(":Q2_K") and rows[3].format.startswith("gguf Q")


def test_estimate_weight_bytes_exact_for_gguf_files(tmp_path, smollm2_path):
    """For a GGUF file, the estimate of its own file type equals its real tensor bytes exactly (the
    mixture rules are `pyquant quantize`'s); F16 is 2 bytes a parameter; the memory verdicts follow
    the budget, and a budget where only sub-4-bit formats fit says so."""
    from pyquant.cli import main
    from pyquant.formats.gguf import GGUFReader
    from pyquant.formats.gguf.recipes import FTYPES
    from pyquant.runtime.estimate import estimate, recommend, shape_of

    q4km = tmp_path / "q4km.gguf"
    assert main(["quantize", str(smollm2_path), str(q4km), "Q4_K_M", "--quiet"]) == 0
    names = {v: k for k, v in FTYPES.items()}
    for path in (smollm2_path, q4km):
        with GGUFReader(path) as r:
            real = sum(t.nbytes for t in r.tensors.values())
            ftype = names[int(r.metadata["general.file_type"])]
        shape, tensors = shape_of(path)
        rows, info = estimate(shape, 512, "cpu:64GB", tensors, measure_speed=False, formats=[ftype, "F16"])
        assert rows[0].weight_bytes == real, (path, ftype)
        assert rows[1].weight_bytes == 2 * info["parameters"] + sum(
            2 * math.prod(d) for n, d in tensors[0].items() if len(d) == 1)     # norms stay F32
        assert info["kv_bytes"] == 512 * 30 * 3 * 64 * 2 * 4                   # float32 K and V, GQA
    shape, _ = shape_of(params="70B", arch="llama")
    rows, _ = estimate(shape, 8192, "cpu:32GB", measure_speed=False)
    fits = {r.format for r in rows if r.fits}
    assert "Q4_K_M" not in fits and "Q2_K" in fits
    best, why = recommend(rows)
    assert best in ("Q3_K_M", "exl2-3.0", "Q2_K", "exl2-2.5") and "sub-4-bit" in why


def test_compare_png(tmp_path):
    pytest.importorskip("matplotlib")
    from pyquant.runtime.compare import CompareRow, plot

    rows = [CompareRow("a", "gguf Q4_0", 70.0, 4.5, 4.5, 20.0, 0.5, 3.0, 0.6, 300.0, 150.0, 330.0, 100),
            CompareRow("b", "gguf Q8_0", 130.0, 8.5, 8.5, 16.5, 0.003, 0.02, 0.97, 290.0, 140.0, 390.0, 100)]
    plot(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_estimate_on_a_named_gpu():
    """cuda:16GB with a named card: fits by the budget, tok/s from the card's bandwidth (Llama-3-8B
    Q4_K_M on a 4090: ~1 TB/s * 0.75 over ~4.7 GB a token, about 150 tok/s)."""
    from pyquant.runtime.estimate import estimate, shape_of

    shape, _ = shape_of(params="8B", arch="llama")
    rows, info = estimate(shape, 8192, "cuda:16GB", gpu="RTX 4090")
    by = {r.format: r for r in rows}
    assert info["gpu"]["card"] == "4090" and not by["F16"].fits and by["Q4_K_M"].fits
    assert 120 < by["Q4_K_M"].tok_s < 200 and by["Q2_K"].tok_s > by["Q8_0"].tok_s
