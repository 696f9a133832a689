"""Long structure-aware fuzz of the GGUF reader (issue #15), outside CI: millions of inputs.

    PYTHONPATH=. python tools/fuzz_gguf.py --inputs 1000000 --workers 2 [--seed 0] [--json out.json]

Inputs, in equal shares, mutated from a corpus of valid files (tests/data: every value type, a
64-byte alignment, no tensors; and SmolLM2's real metadata with its arrays cut to 300 entries plus
eight real tensors): forged structural fields (counts, string lengths, value / element types,
n_dims, dims, tensor type ids, offsets, located with the gguf package) set to boundary values, to
the file size, or nudged by a few; 1-8 random byte flips biased to the header; truncation (every
byte of every corpus file first, then random cuts); and generated files with deeply nested and
huge arrays, long strings and odd alignments. Every input is parsed and every tensor view read to
its last byte. An outcome is "ok" (parsed), "error" (a GGUFError: the expected refusal), or a
failure: any other exception, a hang (> --timeout s), a MemoryError under the worker's 2 GiB
address-space cap, or a dead worker (a crash). Failures are written with their bytes for replay.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import struct
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERESTING = [0, 1, 2, 7, 31, 32, 33, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
               2**63 - 1, 2**63, 2**64 - 1]


# ---------------------------------------------------------------- corpus
sys.path.insert(0, str(ROOT / "tests"))
from gguf_helpers import structural_slots  # noqa: E402


def build_corpus(work: Path) -> list[tuple[str, bytes, list]]:
    from pyquant.formats.gguf import GGUFReader, GGUFWriter
    from pyquant.hub import fetch

    files = [ROOT / "tests/data" / n for n in ("all_types.gguf", "align64.gguf", "no_tensors.gguf")]
    mini = work / "smollm2_mini.gguf"
    with GGUFReader(fetch("smollm2")) as r:
        w = GGUFWriter(mini)
        for key, f in r.fields.items():
            value = f.value[:300] if key.startswith("tokenizer.ggml.") and f.elem_type else f
            w.add_field(key, value, f.vtype if value is not f else None, f.elem_type if value is not f else None)
        for t in list(r.tensors.values())[1:9]:
            w.add_tensor(t.name, t.data, t.qtype, t.shape)
        w.write()
    files.append(mini)
    return [(p.stem, p.read_bytes(), structural_slots(p)) for p in files]


# ---------------------------------------------------------------- mutations
def forge(rng: random.Random, content: bytes, slots) -> bytes:
    buf = bytearray(content)
    for _ in range(rng.randint(1, 3)):
        pos, size = rng.choice(slots)
        r = rng.random()
        if r < 0.5:
            value = rng.choice(INTERESTING + [len(buf), len(buf) + 1, len(buf) - pos])
        elif r < 0.8:
            value = int.from_bytes(buf[pos:pos + size], "little") + rng.randint(-64, 64)
        else:
            value = rng.getrandbits(8 * size)
        buf[pos:pos + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    return bytes(buf)


def flip(rng: random.Random, content: bytes, _slots) -> bytes:
    buf = bytearray(content)
    for _ in range(rng.randint(1, 8)):
        hi = min(len(buf), 4096) if rng.random() < 0.7 else len(buf)
        buf[rng.randrange(hi)] ^= rng.randint(1, 255)
    return bytes(buf)


def truncate(rng: random.Random, content: bytes, _slots) -> bytes:
    return content[:rng.randint(0, len(content))]


def _s(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def generated(rng: random.Random, _content=None, _slots=None) -> bytes:
    """A header built from scratch: nested / huge arrays, long strings, odd alignments, many
    tensors with forged dims (GGUF v3 layout)."""
    kvs, n_kv = b"", rng.randint(0, 6)
    for i in range(n_kv):
        key = _s(f"k{i}".encode() if rng.random() < 0.9 else b"x" * rng.randint(0, 300))
        kind = rng.random()
        if kind < 0.3:                                    # nested arrays of arrays, counts forged
            inner = struct.pack("<IQI", 4, 1, 7)          # an array of one UINT32
            for _ in range(rng.randint(1, 40)):
                inner = struct.pack("<IQ", 9, rng.choice([1, 2, 1000, 2**32])) + inner
            kvs += key + struct.pack("<I", 9) + inner
        elif kind < 0.5:                                  # big array of empty strings / of u8
            elem = rng.choice([8, 0])
            count = rng.choice([0, 1, 1000, 10**6, 2**31, 2**62])
            kvs += key + struct.pack("<I", 9) + struct.pack("<I", elem) + struct.pack("<Q", count)
            kvs += b"\0" * rng.randint(0, 64)
        elif kind < 0.7:                                  # alignment
            kvs = _s(b"general.alignment") + struct.pack("<I", 4) + struct.pack(
                "<I", rng.choice([0, 1, 3, 8, 32, 33, 64, 4096, 2**31])) + kvs
        else:                                             # a string of any claimed length
            kvs += key + struct.pack("<I", 8) + struct.pack("<Q", rng.choice([0, 5, 2**20, 2**64 - 1])) + b"abcde"
    infos, n_t = b"", rng.randint(0, 4)
    for i in range(n_t):
        nd = rng.choice([0, 1, 2, 3, 4, 5, 100])
        dims = b"".join(struct.pack("<Q", rng.choice([0, 1, 32, 256, 4096, 2**31, 2**62])) for _ in range(min(nd, 8)))
        infos += _s(f"t{i}".encode()) + struct.pack("<I", nd) + dims + struct.pack("<I", rng.choice([0, 1, 2, 8, 12, 30, 39, 999]))
        infos += struct.pack("<Q", rng.choice([0, 32, 64, 2**40]))
    head = b"GGUF" + struct.pack("<I", rng.choice([3, 3, 3, 2, 1, 4])) + struct.pack("<Q", n_t) + struct.pack("<Q", n_kv)
    return head + kvs + infos + os.urandom(rng.randint(0, 512))


KINDS = {"forge": forge, "flip": flip, "truncate": truncate, "generated": generated}


# ---------------------------------------------------------------- one worker
class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def check(path: Path) -> str:
    import numpy as np

    from pyquant import GGUFError
    from pyquant.formats.gguf import GGUFReader

    try:
        r = GGUFReader(path)
    except GGUFError:
        return "error"
    with r:
        size = path.stat().st_size
        for t in r.tensors.values():
            if not (r.data_offset <= t.offset and t.offset + t.nbytes <= size):
                raise AssertionError(f"tensor {t.name} outside the file")
            int(t.data.sum(dtype=np.uint64))
        r.metadata.get("general.architecture")
    return "ok"


def worker(args) -> dict:
    wid, start, count, seed, timeout, corpus, out_dir = args
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    signal.signal(signal.SIGALRM, _alarm)
    path = Path(f"/dev/shm/pyquant-fuzz-{os.getpid()}.gguf")
    stats = {"ok": 0, "error": 0, "fail": 0, "hang": 0, "memory": 0, "by_kind": {}}
    kinds = list(KINDS)
    for i in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + i)
        kind = kinds[i % len(kinds)]
        name, content, slots = corpus[rng.randrange(len(corpus))]
        if kind == "truncate" and i // len(kinds) < sum(len(c) + 1 for _, c, _ in corpus):
            # first: every byte of every corpus file
            j = i // len(kinds)
            for n, c, _ in corpus:
                if j <= len(c):
                    data = c[:j]
                    break
                j -= len(c) + 1
        else:
            data = KINDS[kind](rng, content, slots)
        path.write_bytes(data)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            outcome = check(path)
        except Hang:
            outcome = "hang"
        except MemoryError:
            outcome = "memory"
        except Exception:
            outcome = "fail"
            (out_dir / f"fail-{seed}-{i}.gguf").write_bytes(data)
            (out_dir / f"fail-{seed}-{i}.txt").write_text(traceback.format_exc())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if outcome in ("hang", "memory"):
            (out_dir / f"{outcome}-{seed}-{i}.gguf").write_bytes(data)
        stats[outcome] += 1
        k = stats["by_kind"].setdefault(kind, {"ok": 0, "error": 0, "other": 0})
        k[outcome if outcome in ("ok", "error") else "other"] += 1
    path.unlink(missing_ok=True)
    stats["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds an input may take (a hang beyond)")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--out", default="/tmp/pyquant-fuzz", help="where failing inputs are written")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(out_dir)
    jobs = [(w, s, min(args.batch, args.inputs - s), args.seed, args.timeout, corpus, out_dir)
            for w, s in enumerate(range(0, args.inputs, args.batch))]
    total = {"inputs": args.inputs, "ok": 0, "error": 0, "fail": 0, "hang": 0, "memory": 0, "crash_batches": 0,
             "by_kind": {}, "peak_rss_MB": 0.0, "seed": args.seed}
    t0 = time.time()
    # maxtasksperchild=1: a fresh process per batch, so a crash costs one batch and is counted
    with mp.get_context("fork").Pool(args.workers, maxtasksperchild=1) as pool:
        pending = [(job, pool.apply_async(worker, (job,))) for job in jobs]
        for job, res in pending:
            try:
                s = res.get(timeout=args.timeout * job[2] + 600)
            except Exception as e:   # the worker died (signal) or the batch never returned
                total["crash_batches"] += 1
                print(f"batch at input {job[1]}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            for k in ("ok", "error", "fail", "hang", "memory"):
                total[k] += s[k]
            for kind, c in s["by_kind"].items():
                agg = total["by_kind"].setdefault(kind, {"ok": 0, "error": 0, "other": 0})
                for k, v in c.items():
                    agg[k] += v
            total["peak_rss_MB"] = max(total["peak_rss_MB"], s["peak_rss_MB"])
            done = job[1] + job[2]
            print(f"[{time.time() - t0:7.0f} s] {done} inputs: ok {total['ok']} error {total['error']} "
                  f"fail {total['fail']} hang {total['hang']} memory {total['memory']} "
                  f"crashed batches {total['crash_batches']}", file=sys.stderr, flush=True)
    total["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(total, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(total, indent=1))
    return 0 if total["fail"] + total["hang"] + total["memory"] + total["crash_batches"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
