"""Arguments shared by the runner subcommands (run, chat, bench, ppl)."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a one-line usage error)."""
    v = int(text)
    if v < 1:
        raise ValueError(text)
    return v


positive_int.__name__ = "positive integer"   # argparse says "invalid positive integer value: '-4'"


def non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise ValueError(text)
    return v


non_negative_int.__name__ = "non-negative integer"


def device_name(text: str) -> str:
    """cpu, cuda or cuda:N (the devices a model runs on; `meta` is for tests from Python only)."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N")
    return text


def add_model_args(p, threads_default=None, ctx_flag=True):
    p.add_argument("model", help="GGUF file or alias (smollm2)")
    p.add_argument("-t", "--threads", type=positive_int, default=threads_default,
                   help="threads for pyquant's kernels and torch (default: torch's count)")
    p.add_argument("--act", choices=["int8x2", "int8", "float"], default=None,
                   help="activations of the CPU matmuls: int8x2 (default: int8 + its residual, ~float "
                        "fidelity), int8 (one pass, as llama.cpp: fastest), float")
    p.add_argument("--device", type=device_name, default=None, metavar="DEV",
                   help="cpu (default) or cuda[:N]: where the weights, KV cache and forward live (off the "
                        "CPU every linear runs on the kernels pyquant.dispatch picks there: CUDA, Triton)")
    if ctx_flag:
        p.add_argument("-c", "--ctx-size", type=positive_int, default=None, dest="max_seq_len",
                       help="KV cache positions (default: min(model context, 4096))")
    else:
        p.set_defaults(max_seq_len=None)


def fractions(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as 0.5,0.5, got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"fractions must be positive, got {text!r}")
    return vals


def add_parallel_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tp", type=positive_int, default=None,
                   help="tensor parallelism over N processes started by torchrun (--nproc-per-node N): each "
                        "holds 1/N of every layer; gloo on CPUs. Only rank 0 prints.")
    g.add_argument("--split", type=fractions, default=None, metavar="F0,F1,...",
                   help="layer split over the processes started by torchrun (one fraction each, e.g. 0.5,0.5): "
                        "each holds a run of whole layers, for links too slow for --tp. Only rank 0 prints.")


def follower(model) -> bool:
    """True on the ranks other than 0 of a split model: they compute, rank 0 reports."""
    return model.group is not None and model.group.rank != 0


def check_model_arg(model: str) -> None:
    """Fail before any loading when MODEL is neither an existing file or model directory nor a known
    alias (a directory is checked when it is opened: formats/hf/source.py names what it holds)."""
    import os

    from ..errors import PyquantError
    from ..hub import MODELS

    if model in MODELS:
        return
    if not os.path.exists(model):
        raise PyquantError(f"{model}: no such file, and not a model alias ({', '.join(sorted(MODELS))})")


def read_text_file(path: str) -> str:
    """The UTF-8 text of `path`, or a PyquantError naming the file and what is wrong."""
    from ..errors import PyquantError

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PyquantError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PyquantError(f"{path}: is a directory, not a text file") from None
    except OSError as e:
        raise PyquantError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PyquantError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def add_sampling_args(p):
    from ..runtime.sampling import DEFAULTS as D

    # None: the model's generation_config.json (directories), else pyquant's defaults
    p.add_argument("--temp", type=float, default=None,
                   help=f"temperature (0 = greedy; default: the model's generation_config.json, else {D.temperature})")
    p.add_argument("--top-k", type=non_negative_int, default=None, help=f"sample from the k most likely (default {D.top_k})")
    p.add_argument("--top-p", type=float, default=None,
                   help=f"... within the smallest set of mass >= p (default {D.top_p})")
    p.add_argument("--repeat-penalty", type=float, default=None,
                   help=f"divide the logits of recent tokens by this (llama.cpp's; default {D.repeat_penalty}: off)")
    p.add_argument("--repeat-last-n", type=non_negative_int, default=None,
                   help=f"tokens the repeat penalty looks back over (default {D.repeat_last_n})")
    p.add_argument("--seed", type=non_negative_int, default=None, help="random seed for sampling (default: random)")


def load_model(args):
    from ..models import load, set_threads

    check_model_arg(args.model)
    if args.threads:
        set_threads(args.threads)
    if getattr(args, "act", None):
        from .._ext import _C

        _C.set_matmul_act(args.act)
    model = load(args.model, max_seq_len=args.max_seq_len, tp=getattr(args, "tp", None),
                 split=getattr(args, "split", None), device=getattr(args, "device", None))
    if follower(model):   # every rank runs the command; rank 0 alone writes its output
        import os
        import sys

        sys.stdout = open(os.devnull, "w")
    return model
