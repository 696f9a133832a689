"""pyquant.dispatch: choice, explanations, env overrides, registration, lazy device modules, CLI."""
from __future__ import annotations

import pytest
from child_process import child_env, child_python
import torch

import pyquant
from pyquant import dispatch
from pyquant.errors import UnsupportedQTypeError
from pyquant.qtensor import QTensor
from pyquant.qtypes import QType


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("PYQUANT_BACKEND", raising=False)
    monkeypatch.delenv("PYQUANT_DISABLE", raising=False)


def test_cpu_preferred_over_reference():
    assert dispatch.choose("int4_matmul", QType.INT4, "cpu", 1).name == "cpu"
    verdicts = dispatch.explain("int4_matmul", "int4", "cpu", 1)
    assert [v[0] for v in verdicts] == ["cpu", "reference"]
    assert verdicts[0][1] and not verdicts[1][1]
    assert "higher-priority" in verdicts[1][2]


def test_other_devices_get_reference():
    assert dispatch.choose("int8_matmul", QType.INT8, "meta", 4).name == "reference"


def test_force_and_disable(monkeypatch):
    monkeypatch.setenv("PYQUANT_BACKEND", "reference")
    assert dispatch.choose("gguf_matmul", QType.F16, "cpu", 1).name == "reference"
    assert "forces another" in dict((n, r) for n, _, r in dispatch.explain("gguf_matmul", "f16", "cpu"))["cpu"]
    monkeypatch.setenv("PYQUANT_BACKEND", "")
    monkeypatch.setenv("PYQUANT_DISABLE", "cpu, triton")
    assert dispatch.choose("gguf_matmul", QType.F16, "cpu", 1).name == "reference"
    monkeypatch.setenv("PYQUANT_DISABLE", "cpu,reference")
    with pytest.raises(UnsupportedQTypeError, match="disabled by PYQUANT_DISABLE"):
        dispatch.choose("gguf_matmul", QType.F16, "cpu", 1)


def test_forced_backend_that_cannot_run_is_an_error(monkeypatch):
    monkeypatch.setenv("PYQUANT_BACKEND", "cuda")
    with pytest.raises(UnsupportedQTypeError, match="PYQUANT_BACKEND=cuda"):
        pyquant.qmatmul(torch.randn(2, 32), QTensor.quantize(torch.randn(8, 32), "int8"))


def test_unknown_forced_backend_is_named(monkeypatch):
    monkeypatch.setenv("PYQUANT_BACKEND", "cpux")
    with pytest.raises(UnsupportedQTypeError, match="cpux is not a registered backend: .*cpu"):
        dispatch.choose("int8_matmul", QType.INT8, "cpu", 1)


def test_unsupported_type_names_every_reason():
    with pytest.raises(UnsupportedQTypeError, match="cpu: .*reference: "):
        dispatch.choose("gguf_matmul", QType.INT4, "cpu", 1)
    with pytest.raises(ValueError, match="unknown op"):
        dispatch.explain("conv", QType.Q4_0, "cpu")


def test_registered_backend_is_used_by_qmatmul_and_reasons_depend_on_m():
    calls = []

    def int8(x, qweight, scales, bias=None):
        calls.append(x.shape)
        return torch.full((x.shape[0], qweight.shape[0]), 7.0, dtype=x.dtype)

    def supports(op, qt, m):
        return (m <= 4, "small M only") if m <= 4 else (False, f"M={m} > 4")

    dispatch.register_backend(dispatch.Backend("toy", "cpu", supports, {"int8_matmul": int8}, priority=50))
    try:
        qt = QTensor.quantize(torch.randn(8, 32), "int8")
        y = pyquant.qmatmul(torch.randn(2, 3, 32), qt)  # M = 6: toy rejects
        assert not calls and not (y == 7).all()
        y = pyquant.qmatmul(torch.randn(1, 3, 32), qt)  # M = 3: toy accepts, sees x as [M, K]
        assert calls == [torch.Size([3, 32])] and (y == 7).all() and y.shape == (1, 3, 8)
        names = [n for n, _, _ in dispatch.explain("gguf_matmul", "q4_0", "cpu")]
        assert names[0] == "toy"
        assert "no gguf_matmul implementation" in dispatch.explain("gguf_matmul", "q4_0", "cpu")[0][2]
    finally:
        dispatch.unregister_backend("toy")
    assert dispatch.choose("int8_matmul", QType.INT8, "cpu", 3).name == "cpu"


def test_broken_supports_probe_is_reported_not_raised():
    def boom(op, qt, m):
        raise RuntimeError("probe failed")

    dispatch.register_backend(dispatch.Backend("broken", "cpu", boom, {"int8_matmul": None}, priority=99))
    try:
        v = dispatch.explain("int8_matmul", "int8", "cpu")
        assert v[0] == ("broken", False, "supports() raised RuntimeError: probe failed")
        assert dispatch.choose("int8_matmul", "int8", "cpu").name == "cpu"
    finally:
        dispatch.unregister_backend("broken")


def test_lazy_device_modules(monkeypatch):
    """cuda dispatch imports the cuda/triton registration modules once; missing ones are skipped."""
    seen = []
    monkeypatch.setattr(dispatch, "_lazy_done", set())
    monkeypatch.setattr(dispatch, "lazy_errors", {})
    real = dispatch.importlib.import_module

    def fake_import(name, *a):
        seen.append(name)
        if name == "pyquant.kernels.cuda":
            raise ImportError("not built")
        return real("pyquant.kernels.reference") if name == "pyquant.kernels.triton" else real(name, *a)

    monkeypatch.setattr(dispatch.importlib, "import_module", fake_import)
    dispatch.explain("int8_matmul", "int8", "cuda")
    dispatch.explain("int8_matmul", "int8", "cuda")
    assert seen == ["pyquant.kernels.cuda", "pyquant.kernels.triton"]
    assert dispatch.lazy_errors == {"pyquant.kernels.cuda": "ImportError: not built"}
    assert dispatch.describe(device_types=("cuda",), ms=(1,), ops=["int8_matmul"]).startswith(
        "# pyquant.kernels.cuda not loaded (ImportError: not built)")
    assert dispatch.choose("int8_matmul", "int8", "cuda").name in {b.name for b in dispatch.backends("cuda")}


def test_describe_and_cli(capsys):
    table = dispatch.describe(ms=(1,), ops=["gguf_matmul", "int4_matmul"], qtypes_=["f16", "int4", "q4_k"])
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["device", "op", "type", "M", "backend"]
    assert any(line.split()[1:5] == ["gguf_matmul", "F16", "1", "cpu"] for line in lines)
    assert any(line.split()[1:5] == ["int4_matmul", "INT4", "1", "cpu"] for line in lines)
    from pyquant.cli import main

    assert main(["kernels", "--qtype", "int8", "-m", "1", "-m", "64"]) == 0
    out = capsys.readouterr().out
    assert "int8_matmul" in out and "backends: " in out and "64" in out


def test_register_backend_rejects_non_backend():
    with pytest.raises(TypeError):
        dispatch.register_backend({"name": "x"})


def test_triton_interpreter_backend_through_qmatmul():
    """Under TRITON_INTERPRET=1 dispatch imports pyquant.kernels.triton for CPU tensors; forcing it
    runs qmatmul through the Triton kernels (a fresh process: triton reads the variable at import)."""
    pytest.importorskip("triton")
    import subprocess

    code = """
import torch, pyquant
from pyquant import dispatch
qt = pyquant.QTensor.quantize(torch.randn(16, 64), "int4", group_size=32)
x = torch.randn(3, 64)
y = pyquant.qmatmul(x, qt)
ref = x.double() @ qt.dequantize().double().T
assert dispatch.choose("int4_matmul", "int4", "cpu", 3).name == "triton"
print(float((y.double() - ref).abs().max()))
"""
    env = child_env(TRITON_INTERPRET="1", PYQUANT_BACKEND="triton")
    run = subprocess.run(child_python("-c", code), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-4
