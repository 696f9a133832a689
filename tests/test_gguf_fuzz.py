"""Fuzz the GGUF reader with hypothesis: byte flips, truncations and forged values at structural
positions (counts, lengths, value types, n_dims, dims, type ids, offsets) of generated files and of
a small real file cut from SmolLM2. Every outcome must be a successful parse whose views stay
inside the file, or a GGUFError; never another exception, a crash or a hang."""
from __future__ import annotations

import os
import struct
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gguf_helpers import DATA, structural_slots, write
from pyquant import GGUFError
from pyquant.formats.gguf import GGUFReader, GGUFWriter

INTERESTING_U64 = [0, 1, 2, 7, 31, 32, 33, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1,
                   2**63, 2**64 - 1]
# ~400 examples per strategy keep this file well under 60 s; PYQUANT_FUZZ_EXAMPLES=20000 for a soak.
FUZZ = settings(max_examples=int(os.environ.get("PYQUANT_FUZZ_EXAMPLES", 400)), deadline=timedelta(seconds=2), derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, smollm2_path):
    """name -> (bytes, structural slots). 'smollm2_mini': SmolLM2's real metadata with the
    vocabulary arrays cut to 300 entries, plus its first eight real tensors."""
    d = tmp_path_factory.mktemp("fuzz-corpus")
    mini = d / "smollm2_mini.gguf"
    with GGUFReader(smollm2_path) as r:
        w = GGUFWriter(mini)
        for key, f in r.fields.items():
            value = f.value[:300] if key.startswith("tokenizer.ggml.") and f.elem_type else f
            w.add_field(key, value, f.vtype if value is not f else None,
                        f.elem_type if value is not f else None)
        for t in list(r.tensors.values())[1:9]:
            w.add_tensor(t.name, t.data, t.qtype, t.shape)
        w.write()
    out = {}
    for p in [DATA / "all_types.gguf", DATA / "align64.gguf", DATA / "no_tensors.gguf", mini]:
        out[p.stem] = (p.read_bytes(), structural_slots(p))
    return out


def _check(path) -> None:
    try:
        r = GGUFReader(path)
    except GGUFError:
        return
    with r:
        size = path.stat().st_size
        assert r.data_offset % r.alignment == 0
        for t in r.tensors.values():
            assert r.data_offset <= t.offset and t.offset + t.nbytes <= size
            view = t.data
            assert view.size == t.nbytes
            int(view.sum(dtype=np.uint64))      # touch every byte: must stay inside the mapping
        r.metadata.get("general.architecture")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


NAMES = st.sampled_from(["all_types", "align64", "no_tensors", "smollm2_mini"])


@FUZZ
@given(name=NAMES, data=st.data())
def test_fuzz_byte_flips(corpus, scratch, name, data):
    content, _ = corpus[name]
    buf = bytearray(content)
    header_end = min(len(buf), 4096)  # most structure lives at the start; bias flips there
    for _ in range(data.draw(st.integers(1, 8))):
        hi = header_end if data.draw(st.booleans()) else len(buf)
        pos = data.draw(st.integers(0, hi - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
    _check(write(scratch, bytes(buf)))


@FUZZ
@given(name=NAMES, data=st.data())
def test_fuzz_truncation(corpus, scratch, name, data):
    content, _ = corpus[name]
    cut = data.draw(st.integers(0, len(content)))
    _check(write(scratch, content[:cut]))


@FUZZ
@given(name=NAMES, data=st.data())
def test_fuzz_forged_structure(corpus, scratch, name, data):
    content, slots = corpus[name]
    buf = bytearray(content)
    for _ in range(data.draw(st.integers(1, 3))):
        pos, size = data.draw(st.sampled_from(slots))
        choices = INTERESTING_U64 + [len(buf), len(buf) + 1, len(buf) - pos]
        value = data.draw(st.sampled_from(choices) | st.integers(0, 2**64 - 1))
        if data.draw(st.booleans()):                       # small relative change
            old = int.from_bytes(buf[pos:pos + size], "little")
            value = old + data.draw(st.integers(-64, 64))
        value %= 1 << (8 * size)
        buf[pos:pos + size] = value.to_bytes(size, "little")
    _check(write(scratch, bytes(buf)))


def test_structural_slots_cover_header_and_infos(corpus):
    """The forging strategy really targets counts, lengths and tensor-info fields."""
    content, slots = corpus["all_types"]
    positions = {p for p, _ in slots}
    assert {8, 16} <= positions
    n_kv = struct.unpack_from("<Q", content, 16)[0]
    assert len(slots) > 4 * n_kv
