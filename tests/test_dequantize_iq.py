"""I-quant dequantization (IQ1_S .. IQ4_XS): torch reference, C++ scalar and AVX2 paths against
gguf.quants.dequantize (gguf 0.19), bit for bit (int32 patterns, so NaN payloads and signs count),
on random blocks whose f16 super-scales include inf, NaN (with payloads, signalling), subnormals,
+-0 and +-65504."""
from __future__ import annotations

import pathlib
import subprocess

import numpy as np
import pytest
from child_process import child_env, child_python
import torch

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402

from pyquant._ext import _C  # noqa: E402
from pyquant.errors import KernelError  # noqa: E402
from pyquant.kernels.reference.dequant_iq import IQ_DEQUANTIZERS  # noqa: E402
from pyquant.qtypes import QType  # noqa: E402

IQ_TYPES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS"]

# f16 bit patterns for the super-scale: specials first, then a normal one.
SPECIAL_F16 = [
    0x7C00, 0xFC00,            # +-inf
    0x7E00, 0xFE00,            # quiet NaN, negative quiet NaN
    0x7D23, 0xFE01, 0x7C01,    # NaN payloads, a signalling NaN
    0x0001, 0x8001, 0x03FF,    # subnormals (smallest, negative, largest)
    0x0400,                    # smallest normal
    0x0000, 0x8000,            # +0, -0
    0x7BFF, 0xFBFF,            # +-65504
    0x3C00, 0xB555,            # ordinary
]


def geometry(name: str) -> tuple[int, int]:
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]


def set_scale(blocks: np.ndarray, name: str, f16_bits: np.ndarray) -> None:
    """Writes f16 super-scales into blocks (in place). IQ1_M spreads d over the top nibbles of its
    four u16 scale words (bytes 48..55); every other i-quant stores d in bytes 0..1."""
    f16_bits = f16_bits.astype(np.uint16)
    if name == "IQ1_M":
        words = blocks[:, 48:56].copy().view(np.uint16)
        for w in range(4):
            nib = (f16_bits >> (4 * w)) & 0xF
            words[:, w] = (words[:, w] & 0x0FFF) | (nib << 12)
        blocks[:, 48:56] = words.view(np.uint8)
    else:
        blocks[:, 0:2] = f16_bits.reshape(-1, 1).view(np.uint8).reshape(-1, 2)


def make_blocks(name: str, n_random: int = 48, seed: int = 0) -> np.ndarray:
    """Random blocks: every special scale repeated on a few random payloads, ordinary random-normal
    scales, and blocks whose scale bytes are left fully random."""
    _, type_size = geometry(name)
    rng = np.random.default_rng(seed + IQ_TYPES.index(name))
    n_special = 3 * len(SPECIAL_F16)
    blocks = rng.integers(0, 256, size=(n_special + 2 * n_random, type_size), dtype=np.uint8)
    scales = np.concatenate([
        np.repeat(np.array(SPECIAL_F16, dtype=np.uint16), 3),
        np.frombuffer(rng.normal(0, 0.05, n_random).astype(np.float16).tobytes(), dtype=np.uint16),
    ])
    set_scale(blocks[: len(scales)], name, scales)  # the last n_random blocks keep random scale bytes
    return blocks


def oracle(name: str, blocks: np.ndarray) -> np.ndarray:
    block_size, _ = geometry(name)
    return gguf_dequantize(blocks, gguf.GGMLQuantizationType[name]).reshape(blocks.shape[0], block_size)


def assert_bits_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == np.float32 == want.dtype, what
    g, w = got.view(np.int32), want.view(np.int32)
    bad = np.argwhere(g != w)
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} mismatches, first at {i}: "
                             f"got {int(g[i]) & 0xFFFFFFFF:#010x} ({got[i]}), want {int(w[i]) & 0xFFFFFFFF:#010x} ({want[i]})")


def cpu_dequant(name: str, blocks: np.ndarray, rows: int, nthreads: int, dtype=torch.float32) -> torch.Tensor:
    block_size, _ = geometry(name)
    src = torch.from_numpy(np.ascontiguousarray(blocks))
    cols = blocks.shape[0] * block_size // rows
    out = torch.empty(rows, cols, dtype=dtype)
    _C.dequantize(int(QType[name]), src.data_ptr(), src.numel(), out.data_ptr(), out.numel() * out.element_size(),
              str(dtype).removeprefix("torch."), rows, cols, nthreads)
    return out


@pytest.fixture(scope="module")
def threads_ok():
    """Fails multi-threaded tests if a 2-thread dequantize does not finish: a hung worker pool would
    otherwise hang the whole suite (the caller spins in C++, out of reach of any Python timeout)."""
    probe = ("import torch; from pyquant._ext import _C; n = 100000; s = torch.zeros(n); o = torch.empty(n); "
             "_C.dequantize(0, s.data_ptr(), 4 * n, o.data_ptr(), 4 * n, 'float32', 1, n, 2)")
    try:
        subprocess.run(child_python("-c", probe), timeout=20, check=True, env=child_env())
    except subprocess.TimeoutExpired:
        pytest.fail("a 2-thread _C.dequantize did not finish in 20 s (thread pool hang)")


def test_special_scales_reach_the_oracle_as_expected():
    """Guards the fixture itself: the special scales really produce inf / NaN / zero outputs."""
    for name in IQ_TYPES:
        want = oracle(name, make_blocks(name))
        assert np.isnan(want).any() and np.isinf(want).any() and (want == 0).any(), name
        assert np.signbit(want[np.isnan(want)]).any(), name  # negative NaNs are part of the check


@pytest.mark.parametrize("name", IQ_TYPES)
def test_reference_bit_exact(name):
    blocks = make_blocks(name)
    got = IQ_DEQUANTIZERS[QType[name]](torch.from_numpy(blocks.copy()))
    assert got.dtype == torch.float32
    assert_bits_equal(got.numpy(), oracle(name, blocks), f"reference {name}")


@pytest.mark.parametrize("name", IQ_TYPES)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_cpu_bit_exact(name, nthreads, isa, request):
    if nthreads > 1:
        request.getfixturevalue("threads_ok")
    blocks = make_blocks(name)
    block_size, _ = geometry(name)
    nb = blocks.shape[0]
    assert nb % 3 == 0 and (nb // 3) % 2 == 1  # 3 rows of an odd number of blocks...
    got = cpu_dequant(name, blocks, rows=3, nthreads=nthreads)
    assert_bits_equal(got.numpy().reshape(nb, block_size), oracle(name, blocks), f"{isa} {name} x{nthreads}")


@pytest.mark.parametrize("name", IQ_TYPES)
def test_cpu_single_block_and_odd_rows(name, isa):
    """1 row of 1 block, then 5 rows of 1 block each: tail handling of every kernel (one work unit,
    so the driver runs it on the calling thread even with nthreads=2)."""
    blocks = make_blocks(name)[:5]
    want = oracle(name, blocks)
    assert_bits_equal(cpu_dequant(name, blocks[:1], rows=1, nthreads=2).numpy(), want[:1], f"{isa} {name} 1 block")
    got = cpu_dequant(name, blocks, rows=5, nthreads=2).numpy()
    assert_bits_equal(got, want, f"{isa} {name} 5 rows")


@pytest.mark.parametrize("name", IQ_TYPES)
def test_cpu_many_blocks_threaded(name, isa, threads_ok):
    """Enough blocks that the driver splits the work over both threads in several chunks."""
    block_size, type_size = geometry(name)
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=(7 * 1024 // (block_size // 32), type_size), dtype=np.uint8)
    set_scale(blocks, name, np.frombuffer(rng.normal(0, 0.02, blocks.shape[0]).astype(np.float16).tobytes(),
                                          dtype=np.uint16))
    got = cpu_dequant(name, blocks, rows=7, nthreads=2).numpy().reshape(blocks.shape[0], block_size)
    want = IQ_DEQUANTIZERS[QType[name]](torch.from_numpy(blocks.copy())).numpy()  # reference checked above
    assert_bits_equal(got, want, f"{isa} {name} threaded")


@pytest.mark.parametrize("name", ["IQ2_XS", "IQ4_NL", "IQ4_XS"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_outputs(name, dtype, isa, threads_ok):
    """float16 / bfloat16 outputs are the float32 dequantization rounded to nearest even (NaN stays NaN)."""
    blocks = make_blocks(name)
    block_size, _ = geometry(name)
    got = cpu_dequant(name, blocks, rows=1, nthreads=2, dtype=dtype).reshape(-1, block_size)
    want = torch.from_numpy(oracle(name, blocks)).to(dtype)
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got[~nan].view(torch.int16), want[~nan].view(torch.int16))


@pytest.mark.parametrize("name", ["IQ2_XXS", "IQ4_NL"])
def test_cpu_rejects_bad_sizes(name):
    block_size, type_size = geometry(name)
    qid = int(QType[name])
    src = torch.zeros(4 * type_size, dtype=torch.uint8)
    dst = torch.empty(4 * block_size)
    with pytest.raises(KernelError, match="not a multiple of the block size"):
        _C.dequantize(qid, src.data_ptr(), src.numel(), dst.data_ptr(), dst.numel() * 4, "float32", 1, block_size + 1, 1)
    with pytest.raises(KernelError, match="source has"):
        _C.dequantize(qid, src.data_ptr(), src.numel() - 1, dst.data_ptr(), dst.numel() * 4, "float32", 4, block_size, 1)
    with pytest.raises(KernelError, match="destination has"):
        _C.dequantize(qid, src.data_ptr(), src.numel(), dst.data_ptr(), dst.numel() * 4 - 4, "float32", 4, block_size, 1)
    with pytest.raises(KernelError, match="overflows"):
        _C.dequantize(qid, src.data_ptr(), src.numel(), dst.data_ptr(), dst.numel() * 4, "float32", 2**62,
                  block_size * 4, 1)


def test_all_iquants_have_cpu_dequantizers():
    for name in IQ_TYPES:
        assert _C.has_dequantizer(int(QType[name])), name


def test_generated_tables_are_current():
    """csrc/common/iq_tables.h and reference/iq_tables.py are what tools/gen_iq_tables.py makes from gguf."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parent.parent / "tools" / "gen_iq_tables.py"
    spec = importlib.util.spec_from_file_location("gen_iq_tables", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.OUT.read_text() == gen.build()
    assert gen.OUT_PY.read_text() == gen.build_py()
    assert gen.OUT_IQ4NL.read_text() == gen.build_iq4nl()


@pytest.mark.parametrize("name", IQ_TYPES)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pyquant_dequantize(name, backend):
    """The public entry point routes every i-quant to these dequantizers (odd row count: 3 x 49 blocks)."""
    import pyquant

    blocks = make_blocks(name)
    block_size, _ = geometry(name)
    shape = (3, blocks.shape[0] * block_size // 3)
    before = _C.get_num_threads()
    _C.set_num_threads(1)  # threads are covered above (behind threads_ok); this checks the routing
    try:
        got = pyquant.dequantize(torch.from_numpy(blocks.copy()), name, shape, backend=backend)
    finally:
        _C.set_num_threads(before)
    assert got.shape == shape
    assert_bits_equal(got.numpy().reshape(-1, block_size), oracle(name, blocks), f"dequantize {backend} {name}")


@pytest.fixture(scope="module")
def iq4_nl_every_scale():
    """One IQ4_NL block per f16 bit pattern (all 65536 super-scales) with random codes, and the oracle."""
    rng = np.random.default_rng(11)
    blocks = rng.integers(0, 256, size=(65536, 18), dtype=np.uint8)
    set_scale(blocks, "IQ4_NL", np.arange(65536, dtype=np.uint16))
    return blocks, oracle("IQ4_NL", blocks)


def test_every_f16_scale_reference(iq4_nl_every_scale):
    blocks, want = iq4_nl_every_scale
    got = IQ_DEQUANTIZERS[QType.IQ4_NL](torch.from_numpy(blocks.copy())).numpy()
    assert_bits_equal(got, want, "reference IQ4_NL, every f16 scale")


def test_every_f16_scale_cpu(iq4_nl_every_scale, isa):
    """Exercises the scale conversion of each path (scalar integer conversion, AVX2 F16C) exhaustively."""
    blocks, want = iq4_nl_every_scale
    got = cpu_dequant("IQ4_NL", blocks, rows=1, nthreads=1).numpy().reshape(-1, 32)
    assert_bits_equal(got, want, f"{isa} IQ4_NL, every f16 scale")
