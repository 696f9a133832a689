"""Writes tests/data/quantize_golden.json: sha256 of llama.cpp's quantized bytes (built from the
PyPI sdist by tests/oracle/ggml_oracle.py) for the seeded matrices of tests/test_quantize.py.
Run from the repo root: PYTHONPATH=. python tools/gen_quantize_golden.py"""
import hashlib
import json
import pathlib

from pyquant.qtypes import row_bytes
from pyquant.quantization import QUANTIZABLE
from tests.oracle.ggml_oracle import SDIST, load
from tests.test_quantize import CASES, make_case

COLS = [256, 4096]


def main():
    oracle = load()
    digests = {}
    for qt in QUANTIZABLE:
        for case in CASES:
            for cols in COLS:
                data = oracle.quantize(int(qt), make_case(case, cols), row_bytes(qt, cols))
                digests[f"{qt.name}/{case}/{cols}"] = hashlib.sha256(data.tobytes()).hexdigest()
    out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "quantize_golden.json"
    out.write_text(json.dumps({"source": SDIST, "cases": CASES, "cols": COLS, "digests": digests}, indent=1) + "\n")
    print(f"wrote {len(digests)} digests to {out}")


if __name__ == "__main__":
    main()
