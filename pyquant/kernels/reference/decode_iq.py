"""Plain torch reference decoders for the i-quants (IQ1_S .. IQ4_XS). Placeholder: filled by the
i-quant work; maps QType -> fn(blocks uint8 [nblocks, type_size]) -> float32 [nblocks, block_size]."""
IQ_DECODERS: dict = {}
