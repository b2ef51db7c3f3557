"""A stand-in for the rig's second machine: each emulator its own process on TCP, as
``python -m hal.emulators NAME --tcp HOST:PORT --control tcp://HOST:PORT`` runs there."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hall.broker import free_port

EMULATED = ("cctalk", "escpos", "crt571", "k720", "modem", "idcard")


class SecondMachine:
    def __init__(self, work: Path, names: tuple[str, ...] = EMULATED) -> None:
        self.work = work
        self.names = names
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, tuple[int, int]] = {}  # name -> (line port, control port)

    def __enter__(self) -> "SecondMachine":
        self.work.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            line, control = self.ports[name] = free_port(), free_port()
            with open(self.work / f"{name}.log", "w") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "hal.emulators", name, "--tcp", f"127.0.0.1:{line}",
                     "--control", f"tcp://127.0.0.1:{control}"],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        for name, proc in self.procs.items():
            log = self.work / f"{name}.log"
            while "serving tcp" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulator {name} did not start: {log.read_text()[-500:]}")
                time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def rig_toml(self, path: Path, cctalk_has: tuple[str, ...] = ("coin", "bill", "hopper")) -> Path:
        parts = []
        for name, (line, control) in self.ports.items():
            parts.append(f'[devices.{name}]\nport = "socket://127.0.0.1:{line}"\ncontrol = "tcp://127.0.0.1:{control}"\n')
            if name == "cctalk":
                parts.append(f"has = {list(cctalk_has)!r}\n".replace("'", '"'))
        path.write_text("\n".join(parts))
        return path


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.rig.second_machine RIG_TOML``: every emulator on loopback TCP, rig.toml
    written for them; runs until Ctrl-C / SIGTERM (a second machine on one box, for trying the rig)."""
    import argparse
    import signal
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.rig.second_machine")
    parser.add_argument("rig_toml", type=Path)
    args = parser.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with SecondMachine(Path(tempfile.mkdtemp(prefix="second-machine-"))) as machine:
        machine.rig_toml(args.rig_toml)
        print(f"emulators serving; wrote {args.rig_toml}", flush=True)
        try:
            while not stop:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
