"""A private pcscd with the vsmartcard virtual reader (vpcd), for tests and ``kioskd --simulate``.

Why private: the system pcscd (if any) belongs to the real reader; ours listens on its own unix
socket, handed to it by socket activation (LISTEN_FDS=1, the socket on fd 3, inheritable) because
pcscd ignores PCSCLITE_CSOCK_NAME on the server side. Clients — pyscard here — find it through
PCSCLITE_CSOCK_NAME, which must be set before libpcsclite first connects (``use()``).

vpcd listens on ``port`` and ``port + 1`` (two slots, reader names "Virtual PCD 00 00" and
"... 00 01") on all interfaces.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
READER_NAME = "Kiosk vpcd"


def free_port_pair() -> int:
    """A port p with p and p + 1 free on all interfaces (vpcd binds both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of TCP ports for vpcd")


class PrivatePcscd:
    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="pcscd-"))
        self.port = port or free_port_pair()
        self.socket_path = str(self.dir / "pcscd.comm")
        self.log_path = self.dir / "pcscd.log"
        self.pid: int | None = None

    @staticmethod
    def available() -> str | None:
        """Why it cannot run here, or None."""
        if shutil.which("pcscd") is None:
            return "pcscd is not installed (apt: pcscd)"
        if not os.path.exists(VPCD_DRIVER):
            return f"{VPCD_DRIVER} missing (apt: vsmartcard-vpcd)"
        return None

    def start(self, timeout: float = 10.0) -> "PrivatePcscd":
        why = self.available()
        if why:
            raise RuntimeError(why)
        conf = self.dir / "reader.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "vpcd").write_text(
            f'FRIENDLYNAME "{READER_NAME}"\nDEVICENAME /dev/null:{self.port}\n'
            f"LIBPATH {VPCD_DRIVER}\nCHANNELID {self.port}\n")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        listener.bind(self.socket_path)
        listener.listen(32)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        env = dict(os.environ, LISTEN_FDS="1")
        pid = os.fork()
        if pid == 0:  # the child: socket on fd 3, inheritable, then become pcscd
            try:
                os.setsid()
                os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                os.dup2(log, 1)
                os.dup2(log, 2)
                env["LISTEN_PID"] = str(os.getpid())
                os.execvpe("pcscd", ["pcscd", "--foreground", "-c", str(conf)], env)
            finally:
                os._exit(127)
        os.close(log)
        listener.close()
        self.pid = pid
        deadline = time.monotonic() + timeout
        while not self._vpcd_listening():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pcscd did not load vpcd within {timeout:g} s: {self.log_path}")
            if os.waitpid(pid, os.WNOHANG)[0]:
                self.pid = None
                raise RuntimeError(f"pcscd exited at start: {self.log_path.read_text()[-500:]}")
            time.sleep(0.05)
        return self

    def _vpcd_listening(self) -> bool:
        """vpcd accepts on its port (we close at once: vpcd just waits for the next card)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def use(self) -> None:
        """Point this process's PC/SC clients at our pcscd (before the first SCardEstablishContext)."""
        os.environ["PCSCLITE_CSOCK_NAME"] = self.socket_path

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.02)
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.pid = None
