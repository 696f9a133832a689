"""EXL2 (ExLlamaV2) checkpoints: mixed 2-8 bit groups in act-order (layouts.py), read into exact
ggml block weights with an input permutation (reader.py), written by an RTN encoder (writer.py)."""
