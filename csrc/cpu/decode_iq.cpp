// i-quant decoders (placeholder: registered by the i-quant work).
