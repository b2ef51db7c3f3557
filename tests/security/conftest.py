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
