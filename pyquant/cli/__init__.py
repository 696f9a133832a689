"""`pyquant` command line. Each subcommand lives in its own module (pyquant/cli/<name>.py) that
defines `register(subparsers)`; this file only assembles them."""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ["info", "quantize", "awq", "exl2", "run", "chat", "bench", "ppl", "compare", "estimate", "kernels"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="pyquant", description="Quantized LLM kernels and runner")
    parser.add_argument("--version", action="version", version=f"pyquant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"pyquant.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pyquant.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    from ..errors import PyquantError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PyquantError as e:
        print(f"pyquant: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `pyquant info FILE | head`: stop quietly, as other CLIs do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:        # a file the command was given: one line naming it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"pyquant: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"pyquant: error: input is not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
