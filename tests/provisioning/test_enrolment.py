"""First-boot enrolment against a real halld (subprocess, HTTPS) and the secure Mosquitto:
the kiosk makes its key, trades token + CSR for its certificate, and kioskd joins the hall with it.
Replayed, expired, other-kiosk and unknown tokens are refused and logged; an unreachable hall is
retried with backoff, and the customer's screen says so meanwhile."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from controller.enrolment import EnrolmentRefused, ensure
from hall.broker import free_port
from hall.enrol import issue_token
from hall.mosquitto_secure import start_secure_broker
from provisioning.certs import mint_ca, mint_client, mint_server
from provisioning.personalise import identity_toml
from tests.support.kioskd import start_kioskd, write_config
from tests.support.tcpproxy import TcpProxy

FLEET = {"H1": ["K5", "K6", "K7"]}


def wait_for(check, timeout: float, what: str):
    """Poll `check` (a database row, a port) until it answers; across processes there is no event."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    d = tmp_path_factory.mktemp("enrol-hall")
    ca = mint_ca(d / "ca")
    server = mint_server(ca, d / "ca", ["localhost", "127.0.0.1"])
    mint_client(ca, d / "ca", "halld")
    broker = start_secure_broker(d / "mosquitto", ca, server, FLEET)
    db, port, log = d / "hall.db", free_port(), d / "halld.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hall.halld", "serve", "--db", str(db), "--mqtt-host", "localhost",
         "--mqtt-port", str(broker.port), "--hall", "H1", "--http", "off", "--ca", str(d / "ca" / "ca.crt"),
         "--cert", str(d / "ca" / "halld.crt"), "--key", str(d / "ca" / "halld.key"),
         "--enrol", f"127.0.0.1:{port}", "--enrol-cert", str(server.cert_path), "--enrol-key", str(server.key_path),
         "--fleet-ca-dir", str(d / "ca")], stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: proc.poll() is not None or accepts(port), 60, "halld's enrolment port")
        assert proc.poll() is None, log.read_text()
        yield type("Hall", (), {"dir": d, "db": db, "port": port, "log": log, "broker": broker, "ca": ca,
                                "url": f"https://localhost:{port}/enrol"})
    finally:
        proc.terminate()
        proc.wait(30)
        broker.stop()


def card(tmp: Path, hall, kiosk: str, token: str, hall_id: str = "H1", url: str | None = None) -> Path:
    """What personalise puts on the boot partition, as the kiosk sees it mounted."""
    boot = tmp / "boot"
    boot.mkdir(exist_ok=True)
    text = identity_toml(kiosk, hall_id, url or hall.url, token)
    (boot / "kiosk-identity.toml").write_text(text + f"mqtt_host = \"localhost\"\nmqtt_port = {hall.broker.port}\n")
    (boot / "fleet-ca.crt").write_bytes(hall.ca.cert_path.read_bytes())
    return boot / "kiosk-identity.toml"


def rows(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(sql, args).fetchall()


def test_first_boot_enrols_and_kioskd_joins_the_hall(hall, tmp_path: Path) -> None:
    token = issue_token(str(hall.db), "K5", "H1")
    ident = card(tmp_path, hall, "K5", token)
    cfg = write_config(tmp_path, 1)  # id, hall, host and port all come from the card and the enrolment
    kioskd = start_kioskd("--config", str(cfg), "--simulate", "--identity", str(ident),
                          log_path=tmp_path / "kioskd.log")
    try:
        wait_for(lambda: rows(hall.db, "SELECT online FROM fleet WHERE kiosk = 'K5' AND hall = 'H1' AND online = 1"),
                 120, f"K5's birth in the hall database ({tmp_path / 'kioskd.log'})")
    finally:
        kioskd.terminate()
        kioskd.wait(60)
    tls = tmp_path / "state" / "tls"
    assert (tls / "kiosk.key").stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((tls / "kiosk.crt").read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["K5"]
    assert cert.issuer == hall.ca.cert.subject
    assert "token" not in ident.read_text() and "K5" in ident.read_text()  # burnt on the card too
    assert rows(hall.db, "SELECT kiosk, hall FROM enrolments WHERE kiosk = 'K5'") == [("K5", "H1")]
    assert rows(hall.db, "SELECT used_at IS NOT NULL FROM enrol_tokens WHERE kiosk = 'K5'") == [(1,)]
    assert "enrolled as K5 of hall H1" in kioskd.log()
    # a restart needs no token: the certificate is there
    again = asyncio.run(ensure(ident, tls))
    assert again.cert_file == tls / "kiosk.crt"


@pytest.mark.parametrize("case", ["replay", "expired", "other_kiosk", "other_hall", "unknown"])
def test_bad_tokens_refused_and_logged(hall, tmp_path: Path, case: str) -> None:
    if case == "replay":
        token = issue_token(str(hall.db), "K6", "H1")
        first = tmp_path / "first"
        first.mkdir()
        asyncio.run(ensure(card(first, hall, "K6", token), first / "tls"))
        kiosk, why = "K6", "already used"
    elif case == "expired":
        token = issue_token(str(hall.db), "K6", "H1", ttl_s=60, now=time.time() - 3600)
        kiosk, why = "K6", "expired"
    elif case == "other_kiosk":
        token = issue_token(str(hall.db), "K6", "H1")
        kiosk, why = "K5", "issued for kiosk K6 of hall H1, not K5 of H1"
    elif case == "other_hall":
        token = issue_token(str(hall.db), "K6", "H2")
        kiosk, why = "K6", "issued for kiosk K6 of hall H2, not K6 of H1"
    else:
        token, kiosk, why = "x" * 43, "K6", "unknown enrolment token"
    said: list[str] = []
    with pytest.raises(EnrolmentRefused, match=why):
        asyncio.run(ensure(card(tmp_path, hall, kiosk, token), tmp_path / "tls", said.append))
    assert said and why in said[-1]
    assert not (tmp_path / "tls" / "kiosk.crt").exists()
    assert any(why in r[0] for r in rows(hall.db, "SELECT reason FROM enrol_refusals WHERE kiosk = ?", kiosk))
    wait_for(lambda: why in hall.log.read_text(), 10, "halld's log line")
    if case == "other_kiosk":  # a refused attempt does not spend the rightful kiosk's token
        assert rows(hall.db, "SELECT used_at FROM enrol_tokens WHERE kiosk = 'K6' AND hall = 'H1' "
                             "AND used_at IS NULL") != []


async def test_unreachable_hall_is_retried_with_backoff(hall, tmp_path: Path) -> None:
    token = issue_token(str(hall.db), "K5", "H1")
    async with TcpProxy(hall.port) as proxy:
        proxy.cut(refuse=True)
        ident = card(tmp_path, hall, "K5", token, url=f"https://localhost:{proxy.port}/enrol")
        said: list[str] = []
        retries = asyncio.Event()

        def say(line: str) -> None:
            said.append(line)
            if sum("retrying in" in s for s in said) >= 3:
                retries.set()

        task = asyncio.create_task(ensure(ident, tmp_path / "tls", say, backoff_first_s=0.05))
        async with asyncio.timeout(60):
            await retries.wait()
        await proxy.restore()
        async with asyncio.timeout(60):
            done = await task
    assert done.cert_file.exists()
    assert "hall not reachable for enrolment" in said[0] and "attempt 1" in said[0]
    assert said[-1].startswith("enrolled as K5")


async def test_the_screen_says_connecting_while_the_hall_refuses_then_the_kiosk_enrols(hall, tmp_path: Path) -> None:
    """kioskd serves its screen before it enrols: each snapshot carries the enrolment (attempt,
    next try) and no visit can begin; once the hall answers, the kiosk enrols and joins it."""
    from tests.ui.kiosk import start_enrolling
    from tests.ui.test_server import Page

    token = issue_token(str(hall.db), "K7", "H1")
    async with TcpProxy(hall.port) as proxy:
        proxy.cut(refuse=True)
        kioskd, ui_port = start_enrolling(tmp_path, f"https://localhost:{proxy.port}/enrol", hall.ca.cert_path,
                                          kiosk="K7", hall="H1", token=token, mqtt_port=hall.broker.port)
        screen = type("Screen", (), {"url": f"http://127.0.0.1:{ui_port}/", "ui_port": ui_port})
        try:
            async with asyncio.timeout(30):  # the listener is bound first thing
                while not accepts(ui_port):
                    assert kioskd.poll() is None, kioskd.log()[-3000:]
                    await asyncio.sleep(0.1)
            page = await Page.open(screen)
            try:
                first = await page.until("retrying", lambda s: (s["enrolment"] or {}).get("state") == "retrying")
                assert first["mode"] == "out_of_service" and first["kiosk"] == "K7" and first["visit"] is None
                assert first["enrolment"]["retry_at"] and first["enrolment"]["error"]
                later = await page.until("two more attempts", lambda s: (s["enrolment"] or {}).get("attempt", 0)
                                         >= first["enrolment"]["attempt"] + 2)
                assert later["enrolment"]["hall"] == "H1"
                await page.send({"type": "begin", "service": "topup", "id": 1})
                while True:  # snapshots may come first; the refusal follows
                    msg = await page.next()
                    if msg.get("type") == "refused":
                        break
                assert "starting" in msg["error"]
                assert not list((tmp_path / "run").glob("emu-*.sock")), "a device was opened before enrolment"
                await proxy.restore()
                await page.until("enrolled", lambda s: s["enrolment"] is None, timeout=120)
                await asyncio.to_thread(wait_for, lambda: rows(hall.db, "SELECT online FROM fleet WHERE kiosk = 'K7' "
                                                               "AND online = 1"), 120, "K7 online at the hall")
                # SIGHUP re-reads kiosk.toml ("unenrolled", no TLS): the enrolled identity stays
                kioskd.send_signal(signal.SIGHUP)
                await asyncio.to_thread(wait_for, lambda: "configuration reloaded" in kioskd.log(), 30, "the reload")
                fresh = await Page.open(screen)  # its first snapshot is made now, after the reload
                try:
                    assert (await fresh.until("a snapshot", lambda s: True))["kiosk"] == "K7"
                finally:
                    await fresh.close()
                assert "take effect at the next restart" not in kioskd.log()
            finally:
                await page.close()
        finally:
            kioskd.terminate()
            assert await asyncio.to_thread(kioskd.wait, 60) == 0, kioskd.log()[-3000:]
    assert rows(hall.db, "SELECT kiosk, hall FROM enrolments WHERE kiosk = 'K7'") == [("K7", "H1")]
    assert "token" not in (tmp_path / "boot" / "kiosk-identity.toml").read_text()
