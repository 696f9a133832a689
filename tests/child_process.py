"""Running a child Python that sees the same pyquant as the test process."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def child_python(*args):
    """argv for a child Python that imports the same pyquant as this process. `-P` keeps the
    working directory off sys.path: in a clean clone the source tree's pyquant has no compiled
    _C and must not shadow the installed package."""
    return [sys.executable, "-P", *args]


def child_env(**extra):
    """os.environ plus `extra`, with the directory this process imported pyquant from first on
    PYTHONPATH (the source tree in development, site-packages when installed)."""
    import pyquant

    home = str(Path(pyquant.__file__).resolve().parent.parent)
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH", "")) if p)
    return env


def run_pyquant(*args, stdin=None, timeout=300):
    """`python -m pyquant ARGS` in a child (the same pyquant as this process), output captured."""
    import subprocess

    return subprocess.run(child_python("-m", "pyquant", *args), capture_output=True, text=True, input=stdin,
                          timeout=timeout, env=child_env())


def peak_rss_of_a_generation(model_path) -> int:
    """Peak RSS in bytes of a child that loads `model_path` and generates 16 tokens. Read from
    /proc/self/status VmHWM: getrusage's ru_maxrss survives fork+exec, so a child of this (large)
    pytest process would report the parent's size."""
    import subprocess

    code = ("import pyquant, sys\n"
            "m = pyquant.load(sys.argv[1])\n"
            "m.generate('The capital of France is', max_new_tokens=16)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(int(hwm.split()[1]) * 1024)\n")
    out = subprocess.run(child_python("-c", code, str(model_path)), capture_output=True, text=True, check=True,
                         env=child_env())
    return int(out.stdout.split()[-1])
