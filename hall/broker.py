"""A local Mosquitto on a free loopback port with its own config and persistence dir (demo and tests)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Nagle off on the broker's sockets too (request/reply over MQTT otherwise waits for delayed ACKs),
# and a deeper per-session queue than the default 1000, which a hall of kiosks draining backlogs
# into halld overflows (the broker then drops QoS 1 messages and halld must ask for them again).
# Never 0 on 2.0.11 (docs/security.md).
BROKER_TUNING = ("set_tcp_nodelay true", "max_queued_messages 100000")


def start_broker(workdir: Path, extra_conf: str = "", port: int | None = None) -> Broker:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise RuntimeError("mosquitto is not installed: ./dev demo and ./dev test install it (apt-get install mosquitto)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {workdir}/",
        *BROKER_TUNING,
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else mosquitto drops to 'mosquitto' and cannot write our temp dir
    conf.write_text("\n".join(lines) + "\n" + extra_conf)
    log = open(workdir / "mosquitto.log", "ab")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {(workdir / 'mosquitto.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Broker("127.0.0.1", port, proc, workdir)
        except OSError:
            time.sleep(0.01)  # polling a port that is not open yet; bounded by the deadline
    proc.kill()
    raise RuntimeError("mosquitto did not open its port within 10 s")
