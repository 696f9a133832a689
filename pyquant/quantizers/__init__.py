"""Quantization algorithms that choose weights from data (calibration text), as opposed to the
round-to-nearest packers of pyquant.quantization / pyquant.formats.generic. One file each."""
