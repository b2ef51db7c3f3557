"""Run kioskd as a subprocess the way systemd would, with a config written by the test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def write_config(tmp: Path, broker_port: int, devices: str = "", kiosk_extra: str = "") -> Path:
    path = tmp / "kiosk.toml"
    path.write_text(f"""
[kiosk]
id = "K-TEST-1"
hall = "H-TEST"
state_dir = "{tmp}/state"
runtime_dir = "{tmp}/run"
stop_grace_s = 2.0
{kiosk_extra}

[mqtt]
host = "127.0.0.1"
port = {broker_port}
telemetry_interval_s = 0.5
{devices}
""")
    return path


class Kioskd(subprocess.Popen):
    """kioskd's output goes to a file (a pipe nobody reads would fill up and stall it)."""

    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def start_kioskd(*args: str, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Kioskd:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out = open(log_path, "a")
    proc = Kioskd([sys.executable, "-m", "controller", *args], env=full_env, stdout=out, stderr=out, text=True, cwd=cwd)
    proc.log_path = log_path
    return proc
