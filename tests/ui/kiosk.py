"""A real ``kioskd --simulate`` for the screen's tests: its own config, ports and dirs, restartable.

The customer's hands are the emulators' control sockets (``{runtime_dir}/emu-NAME.sock``): coins
and notes go in there, cards are pulled out there, receipts are read back there. The hall's hands
are its commands over MQTT (what halld's console sends) and bosssim's /control/ faults.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import tomlkit

from controller.daemon import SIMULATED_CONFIG
from hal.emulators.control import call_sync
from hall.broker import free_port
from tests.support.kioskd import start_kioskd
from tests.support.notify import NotifySocket


def write_config(tmp: Path, *, mqtt_port: int, ui_port: int, notices: list[str] = (), flows: dict | None = None,
                 kiosk_id: str = "UI-TEST-1") -> Path:
    doc = tomlkit.parse(SIMULATED_CONFIG.read_text())
    doc["kiosk"]["id"] = kiosk_id
    doc["kiosk"]["state_dir"] = str(tmp / "state")
    doc["kiosk"]["runtime_dir"] = str(tmp / "run")
    doc["mqtt"]["port"] = mqtt_port
    ui = tomlkit.table()
    ui["listen"] = f"127.0.0.1:{ui_port}"
    ui["notices"] = list(notices)
    doc["ui"] = ui
    if flows:
        table = tomlkit.table()
        for k, v in flows.items():
            table[k] = v
        doc["flows"] = table
    path = tmp / "kiosk.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


class SimKiosk:
    def __init__(self, tmp: Path, mqtt_port: int, boss_url: str, **config: Any) -> None:
        self.tmp = tmp
        self.boss_url = boss_url
        self.ui_port = free_port()
        self.mqtt_port = mqtt_port
        self.kiosk_id = config.get("kiosk_id", "UI-TEST-1")
        self.config = write_config(tmp, mqtt_port=mqtt_port, ui_port=self.ui_port, **config)
        self.proc = None
        self.notify: NotifySocket | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}/"

    @property
    def sock(self) -> str:
        return str(self.tmp / "run" / "kioskd.sock")

    def emu_sock(self, name: str) -> str:
        return str(self.tmp / "run" / f"emu-{name}.sock")

    def emu(self, name: str, cmd: str, **args: Any) -> Any:
        return call_sync(self.emu_sock(name), cmd, **args)

    def api(self, cmd: str, **args: Any) -> Any:
        return call_sync(self.sock, cmd, **args)

    def hall_command(self, name: str, timeout: float = 10.0, **args: Any) -> Any:
        """The hall's command ``name`` over MQTT, as halld sends it (cmd/NAME, a reply on cmdresp/);
        the reply's body. In a thread of its own: Playwright's sync API keeps a loop in this one."""
        from tests.controller.linkkit import hall_client

        hall = tomlkit.parse(self.config.read_text())["kiosk"]["hall"]
        self.wait("kioskd's hall link up", lambda: self.api("status")["hall_link"])

        async def send() -> Any:
            async with hall_client(self.mqtt_port, hall, self.kiosk_id) as h:
                return await h.command(name, {"schema": 1, "args": args}, timeout=timeout)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, send()).result()

    def boss(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """bosssim's /control/ face: ``boss("fault", {"op": "*", "mode": "down", ...})``, ``boss("clear")``."""
        req = urllib.request.Request(f"{self.boss_url}/control/{path}", data=json.dumps(body or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def start(self, timeout: float = 30.0) -> "SimKiosk":
        self.starts += 1
        notify_path = self.tmp / f"notify-{self.starts}.sock"
        self.notify = NotifySocket(notify_path)
        self.proc = start_kioskd("--simulate", "--config", str(self.config), "--boss-url", self.boss_url,
                                 log_path=self.tmp / "kioskd.log", env={"NOTIFY_SOCKET": str(notify_path)},
                                 cwd=self.tmp)
        try:
            self.notify.wait_for("READY=1", timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"kioskd not ready: {self.log()[-3000:]}") from None
        return self

    def log(self) -> str:
        path = self.tmp / "kioskd.log"
        return path.read_text() if path.exists() else ""

    def kill(self) -> None:
        """A crash: SIGKILL, nothing cleaned up (the journal's recovery is the record)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.notify.close()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.notify.close()

    def wait(self, what: str, check, timeout: float = 20.0) -> Any:
        """Poll ``check`` (kioskd's socket, an emulator's state) until it returns something true."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except (OSError, ValueError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})\n{self.log()[-2000:]}")


def start_enrolling(tmp: Path, enrol_url: str, ca_cert: Path, *, kiosk: str = "K-NEW-1", hall: str = "H1",
                    token: str = "t" * 43, mqtt_port: int = 1, ui_port: int | None = None):
    """A first boot: ``kioskd --simulate --identity CARD`` whose card points at ``enrol_url``. Returns
    (process, screen port); its screen says it is connecting to the hall until the hall answers."""
    from provisioning.personalise import identity_toml

    boot = tmp / "boot"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "kiosk-identity.toml").write_text(identity_toml(kiosk, hall, enrol_url, token)
                                              + f'mqtt_host = "localhost"\nmqtt_port = {mqtt_port}\n')
    (boot / "fleet-ca.crt").write_bytes(ca_cert.read_bytes())
    ui_port = ui_port or free_port()
    config = write_config(tmp, mqtt_port=mqtt_port, ui_port=ui_port, kiosk_id="unenrolled")
    proc = start_kioskd("--simulate", "--config", str(config), "--identity", str(boot / "kiosk-identity.toml"),
                        log_path=tmp / "kioskd.log", cwd=tmp)
    return proc, ui_port
