"""Hugging Face model directories: safetensors shards mapped zero-copy (checkpoint.py), config.json
and tensor names in GGUF's vocabulary (config.py), the model's weight source (source.py), and
`pyquant info DIR` (summary.py). The quantized formats they may hold live beside: awq/, exl2/."""
