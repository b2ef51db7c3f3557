"""The hall as an attacker meets it (issue 16): a real mosquitto with TLS and the fleet's ACL, a
real halld with its own certificate, real kioskd where a case involves the kiosk.

Kiosk K1 is the hostile one (its certificate is "stolen"); K2 is an honest neighbour whose ingest
must go on.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from hall.broker import free_port
from hall.mosquitto_secure import SecureBroker, start_secure_broker
from provisioning.certs import CA, Issued, mint_ca, mint_client, mint_server, tls_context
from tests.hall.kiosk_client import FakeKiosk, running_halld

FLEET = {"H1": ["K1", "K2"], "H2": ["K3"]}


@dataclass
class Pki:
    dir: Path
    ca: CA
    server: Issued

    def context(self, cn: str):
        return tls_context(self.dir / "ca.crt", self.dir / f"{cn}.crt", self.dir / f"{cn}.key")

    def halld_tls(self, cn: str = "halld") -> dict:
        """HalldConfig's TLS fields for worker `cn` (the host name must be in the server's SANs)."""
        return {"ca_file": str(self.dir / "ca.crt"), "cert_file": str(self.dir / f"{cn}.crt"),
                "key_file": str(self.dir / f"{cn}.key"), "mqtt_host": "localhost", "worker": cn}


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("security-pki")
    ca = mint_ca(d)
    server = mint_server(ca, d, ["localhost", "127.0.0.1"])
    for cn in ("halld", "K1", "K2", "K3"):
        mint_client(ca, d, cn)
    return Pki(d, ca, server)


@pytest.fixture(scope="module")
def hall_broker(pki, tmp_path_factory) -> SecureBroker:
    b = start_secure_broker(tmp_path_factory.mktemp("security-mosquitto"), pki.ca, pki.server, FLEET)
    yield b
    b.stop()


def kiosk(broker: SecureBroker, pki: Pki, cn: str, hall: str = "H1") -> FakeKiosk:
    """A bare MQTT client holding kiosk `cn`'s certificate: what an attacker with it can do."""
    return FakeKiosk(broker.port, hall, cn, tls=pki.context(cn), host="localhost")


def halld(broker: SecureBroker, pki: Pki, db: str, **config):
    return running_halld(broker.port, db, halls=["H1", "H2"], **{**pki.halld_tls(), **config})


@dataclass
class RecordingBoss:
    """An operator's BOSS that answers every path `ok` and remembers what was asked of it."""

    url: str
    seen: list[str]


@pytest.fixture
async def recording_boss():
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.raw_path}")
        return web.json_response({"ok": True, "result": {"pong": True, "done": True}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield RecordingBoss(f"http://127.0.0.1:{port}", seen)
    await runner.cleanup()


@contextlib.asynccontextmanager
async def timeout(seconds: float, what: str):
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"{what}: not within {seconds} s") from None


# --- a real kioskd (--simulate: every device on its emulator) on the TLS broker -----------------

class KioskProc:
    """kioskd as systemd runs it, as kiosk `kiosk_id` of hall H1 with its own certificate."""

    def __init__(self, tmp: Path, broker: SecureBroker, pki: Pki, kiosk_id: str = "K1") -> None:
        import re

        from controller.daemon import SIMULATED_CONFIG

        self.tmp, self.kiosk = tmp, kiosk_id
        tmp.mkdir(parents=True, exist_ok=True)
        text = SIMULATED_CONFIG.read_text()
        for pattern, value in ((r"^id = .*$", f'id = "{kiosk_id}"'), (r"^hall = .*$", 'hall = "H1"'),
                               (r"^state_dir = .*$", f'state_dir = "{tmp}/state"'),
                               (r"^runtime_dir = .*$", f'runtime_dir = "{tmp}/run"'),
                               (r"^host = .*$", 'host = "localhost"'), (r"^port = 1883$", f"port = {broker.port}")):
            text, n = re.subn(pattern, value, text, count=1, flags=re.M)
            assert n == 1, pattern
        text = text.replace("[mqtt]", f'[mqtt]\nca_file = "{pki.dir}/ca.crt"\ncert_file = "{pki.dir}/{kiosk_id}.crt"\n'
                                      f'key_file = "{pki.dir}/{kiosk_id}.key"', 1)
        self.config = tmp / "kiosk.toml"
        self.config.write_text(text)
        self.sock = str(tmp / "run" / "kioskd.sock")
        self.proc = None

    def start(self) -> "KioskProc":
        from tests.support.kioskd import start_kioskd
        from tests.support.notify import NotifySocket

        (self.tmp / "notify.sock").unlink(missing_ok=True)  # from an earlier start
        notify = NotifySocket(self.tmp / "notify.sock")
        try:
            self.proc = start_kioskd("--config", str(self.config), "--simulate", log_path=self.tmp / "kioskd.log",
                                     env={"NOTIFY_SOCKET": notify.path}, cwd=self.tmp)
            notify.wait_for("READY=1", timeout=30)
        finally:
            notify.close()
        return self

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0, self.proc.log()[-3000:]
        self.proc = None

    def log(self) -> str:
        return (self.tmp / "kioskd.log").read_text()


async def online(h, kiosk_id: str = "K1", seconds: float = 30.0) -> None:
    """Until halld has stored the kiosk's birth (the fleet row says online)."""
    from hall import queries

    async with timeout(seconds, f"{kiosk_id} online at the hall"):
        while not ((row := await h._reader(queries.kiosk, kiosk_id)) and row["online"]):
            await asyncio.sleep(0.05)  # polling the hall's table; bounded by the timeout


@pytest.fixture
def kioskd_k1(tmp_path, hall_broker, pki):
    k = KioskProc(tmp_path / "k1", hall_broker, pki)
    yield k
    k.stop()
    asyncio.run(forget_status(hall_broker, pki, "K1"))  # the next test's kioskd counts its boots from 1 again
    assert "Traceback" not in k.log()


async def forget_status(broker: SecureBroker, pki: Pki, cn: str, hall: str = "H1") -> None:
    import aiomqtt

    async with aiomqtt.Client("localhost", broker.port, identifier=cn, protocol=aiomqtt.ProtocolVersion.V5,
                              tls_context=pki.context(cn), timeout=5) as c:
        await c.publish(f"kiosk/v1/{hall}/{cn}/status", b"", qos=1, retain=True)
