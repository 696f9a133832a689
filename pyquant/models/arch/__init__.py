"""One file per architecture family. Each registers its DecoderModel subclass under the GGUF
`general.architecture` names it runs (`@register("qwen3")`); every module in this package is
imported on the first `pyquant.load`, so adding an architecture is adding a file here."""
