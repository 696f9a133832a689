"""Exceptions raised by pyquant. Every error names the file / tensor / field and what is wrong."""


class PyquantError(Exception):
    """Base class of every pyquant error."""


class KernelError(PyquantError, ValueError):
    """A kernel refused its arguments (raised from the C++ / CUDA side after validation)."""


class FormatError(PyquantError, ValueError):
    """A model file (GGUF, AWQ, EXL2) is malformed or unsupported.

    The message starts with the file path and names the field or tensor at fault.
    """

    def __init__(self, path, message):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class GGUFError(FormatError):
    """A GGUF file is malformed or unsupported."""


class UnsupportedQTypeError(PyquantError, ValueError):
    """An operation was asked for a quant type it does not implement."""
