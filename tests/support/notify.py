"""The systemd side of sd_notify: a datagram socket a test binds and hands to kioskd."""
from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 10.0) -> list[str]:
        """Block until a datagram carrying ``line`` arrives; returns every datagram so far."""
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {line!r} within {timeout} s; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                continue
        return self.messages

    def close(self) -> None:
        self.sock.close()
