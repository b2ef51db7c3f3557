"""Every fuzz target (tests/reliability/fuzz_targets.py) a million inputs or more; prints inputs/s and
crashes per target.

    python bench/fuzz.py [--runs 1000000] [--engine atheris|random] [--targets cctalk,k720]

``atheris`` (pip install atheris; coverage-guided libFuzzer, the project's code instrumented) when
it imports, else ``random``: seeded mutation of the targets' seeds (overwrite, insert, cut, splice)
mixed with plain random bytes, uninstrumented, so faster per input. Each target runs in its own
process. A crash is an exception other than the target's declared error; the run goes on after
one, counting distinct (exception, file, line) sites, and prints the first input of each in hex.
Prints numbers; it never fails on timing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LAZY = ("controller.commands", "controller.config", "controller.api", "hall.store", "hal.emulators.usim",
        "hal.emulators.control", "hal.simcard.writer")  # imported by targets on first use


def _site(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"


class Tally:
    def __init__(self, name: str, runs: int) -> None:
        self.name, self.runs = name, runs
        self.count = 0
        self.crashes: dict[str, str] = {}
        self.t0 = time.perf_counter()

    def one(self, target, data: bytes) -> None:
        self.count += 1
        try:
            target.one(data)
        except Exception as exc:  # noqa: BLE001 - a crash: counted, the run goes on
            self.crashes.setdefault(_site(exc), data[:200].hex())

    def report(self, engine: str) -> str:
        return json.dumps({"target": self.name, "engine": engine, "inputs": self.count,
                           "seconds": time.perf_counter() - self.t0, "crashes": self.crashes})


def child_random(name: str, runs: int, seed: int) -> None:
    from tests.reliability.fuzz_targets import TARGETS

    target, rng, tally = TARGETS[name], random.Random(seed), Tally(name, runs)
    seeds = target.seeds or [b""]
    pool = list(seeds)
    while tally.count < runs:
        if rng.random() < 0.25:
            data = rng.randbytes(rng.randint(0, 96))
        else:
            data = bytearray(rng.choice(pool))
            for _ in range(rng.randint(1, 6)):
                at = rng.randint(0, len(data))
                how = rng.random()
                if how < 0.5 and at < len(data):
                    data[at] = rng.randrange(256) if rng.random() < 0.7 else data[at] ^ (1 << rng.randrange(8))
                elif how < 0.75:
                    data[at:at] = rng.randbytes(rng.randint(1, 8))
                elif how < 0.9:
                    del data[at:at + rng.randint(1, 8)]
                else:  # splice in a piece of another seed
                    other = rng.choice(seeds)
                    i = rng.randint(0, len(other))
                    data[at:at] = other[i:i + rng.randint(1, 32)]
            data = bytes(data)
            if len(pool) < 64 and rng.random() < 0.001:
                pool.append(data)
        tally.one(target, data)
    print(tally.report("random"), flush=True)


def child_atheris(name: str, runs: int) -> None:
    import importlib

    import atheris

    with atheris.instrument_imports(include=["hal", "controller", "hall", "transactions", "tests.reliability"]):
        from tests.reliability.fuzz_targets import TARGETS

        for module in LAZY:
            importlib.import_module(module)
    target, tally = TARGETS[name], Tally(name, runs)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(target.seeds):
        (corpus / f"seed{i}").write_bytes(seed)

    def one(data: bytes) -> None:
        tally.one(target, data)
        if tally.count >= runs:
            print(tally.report("atheris"), flush=True)
            os._exit(0)

    atheris.Setup([sys.argv[0], "-max_len=1024", "-timeout=20", "-rss_limit_mb=4096", "-print_final_stats=0",
                   str(corpus)], one)
    atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("atheris", "random"), default=None)
    parser.add_argument("--targets", default="", help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (child_atheris(args.child, args.runs) if args.engine == "atheris"
         else child_random(args.child, args.runs, args.seed))
        return
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    from tests.reliability.fuzz_targets import TARGETS

    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    print(f"fuzz: {engine}, {args.runs:,} inputs per target, {len(names)} targets")
    print(f"{'target':20s} {'inputs':>10s} {'seconds':>8s} {'inputs/s':>9s}  crashes")
    total = 0
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--runs", str(args.runs), "--engine", engine,
                              "--seed", str(args.seed)], capture_output=True, text=True, cwd=ROOT)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
        if line is None:
            print(f"{name:20s} died (exit {out.returncode}): {(out.stderr or out.stdout)[-600:]}")
            total += 1
            continue
        r = json.loads(line)
        total += len(r["crashes"])
        print(f"{name:20s} {r['inputs']:>10,d} {r['seconds']:>8.1f} {r['inputs'] / r['seconds']:>9,.0f}  {len(r['crashes'])}",
              flush=True)
        for site, data in r["crashes"].items():
            print(f"    {site}: {data}")
    print(f"crash sites in all: {total}")


if __name__ == "__main__":
    main()
