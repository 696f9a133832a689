import pytest

from pyquant import qtypes
from pyquant._ext import _C
from pyquant.errors import UnsupportedQTypeError


def test_cpp_registry_matches_python():
    cpp = {tid: (bs, ts) for tid, bs, ts in _C.qtype_table()}
    py = {int(t): (i.block_size, i.type_size) for t, i in qtypes.REGISTRY.items() if t in qtypes.GGML_TYPES}
    assert cpp == py


def test_registry_matches_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    for t in qtypes.GGML_TYPES:
        g = GGMLQuantizationType(int(t))
        assert GGML_QUANT_SIZES[g] == (qtypes.REGISTRY[t].block_size, qtypes.REGISTRY[t].type_size), t.name


def test_qtype_resolution():
    assert qtypes.qtype("q4_k") is qtypes.QType.Q4_K
    assert qtypes.qtype(12) is qtypes.QType.Q4_K
    assert qtypes.row_bytes("Q4_K", 512) == 288
    with pytest.raises(UnsupportedQTypeError):
        qtypes.qtype("Q9_X")
    with pytest.raises(UnsupportedQTypeError, match="not a multiple"):
        qtypes.row_bytes("Q4_0", 33)
