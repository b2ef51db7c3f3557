"""The hall link over TLS with this kiosk's client certificate, against hall/mosquitto_secure.py's
broker (certificates required, CN = user = client id, per-kiosk ACL): everything the contract
needs gets through the ACL — birth, records and acks, BOSS request/response, hall state, commands."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from controller.boss_link import HallBossTransport
from controller.config import ConfigError, load
from hall.mosquitto_secure import start_secure_broker
from provisioning.certs import mint_ca, mint_client, mint_server, tls_context
from tests.support.kioskd import start_kioskd
from transactions.boss import Boss

from .linkkit import enqueue, hall_client, kiosk_config, kiosk_link, until

FLEET = {"H-TLS": ["K-TLS-1", "K-TLS-2"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = mint_ca(d)
    server = mint_server(ca, d, ["localhost", "127.0.0.1"])
    for cn in ("halld", "K-TLS-1", "K-TLS-2"):
        mint_client(ca, d, cn)
    broker = start_secure_broker(tmp_path_factory.mktemp("secure"), ca, server, FLEET)
    yield d, broker
    broker.stop()


def tls_lines(d: Path, cn: str) -> str:
    return f'ca_file = "{d}/ca.crt"\ncert_file = "{d}/{cn}.crt"\nkey_file = "{d}/{cn}.key"'


async def test_the_link_works_over_tls_through_the_acl(tmp_path, pki):
    d, broker = pki
    config = kiosk_config(tmp_path, broker.port, kiosk="K-TLS-1", hall="H-TLS", extra=tls_lines(d, "K-TLS-1"))
    transports = []
    halld_tls = tls_context(d / "ca.crt", d / "halld.crt", d / "halld.key")
    async with hall_client(broker.port, "H-TLS", "K-TLS-1", tls=halld_tls, identifier="halld") as hall, \
            kiosk_link(config, setup=lambda link: transports.append(HallBossTransport(link))) as (link, journal, outbox):
        birth = await hall.next("status", where=lambda g: g.body["online"])
        assert birth.body["session"] == link.session
        await hall.state(True)
        await until(lambda: link.hall_online is True)  # hall/v1/H-TLS/state is readable by the kiosk

        await enqueue(journal, 3, outbox)
        assert [g.body["msg_seq"] for g in await hall.records(3)] == [1, 2, 3]
        await hall.ack(3)  # the kiosk may read its own ack
        await until(lambda: outbox.depth == 0)

        boss = Boss(transports[0], timeout=5)
        call = asyncio.ensure_future(boss.query_balance("13800138000"))
        req = await hall.next("boss/req")
        await hall.reply(req, {"schema": 1, "ok": True, "result": {"balance_fen": 700, "arrears_fen": 0}})
        assert (await call).balance_fen == 700  # resp/boss is readable by the kiosk


async def test_kioskd_answers_commands_over_tls(tmp_path, pki):
    d, broker = pki
    config = kiosk_config(tmp_path, broker.port, kiosk="K-TLS-2", hall="H-TLS", extra=tls_lines(d, "K-TLS-2"))
    proc = start_kioskd("--config", config.path, log_path=tmp_path / "kioskd.log")
    try:
        halld_tls = tls_context(d / "ca.crt", d / "halld.crt", d / "halld.key")
        async with hall_client(broker.port, "H-TLS", "K-TLS-2", tls=halld_tls, identifier="halld") as hall:
            await hall.next("status", where=lambda g: g.body["online"], timeout=20)
            reply = await hall.command("request_telemetry", {"schema": 1, "args": {}})
            assert reply["ok"] is True and reply["result"]["kiosk"] == "K-TLS-2"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '"tls": true' in proc.log()


def test_the_certificate_must_name_this_kiosk(tmp_path, pki):
    d, broker = pki
    with pytest.raises(ConfigError) as exc:
        kiosk_config(tmp_path, broker.port, kiosk="K-TLS-1", extra=tls_lines(d, "K-TLS-2"))
    assert exc.value.key == "mqtt.cert_file" and "K-TLS-2" in exc.value.problem and "K-TLS-1" in exc.value.problem


def test_tls_needs_all_three_files(tmp_path, pki):
    d, _ = pki
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[kiosk]\nid = "K-TLS-1"\nhall = "H"\n[mqtt]\nca_file = "{d}/ca.crt"\ncert_file = "{d}/K-TLS-1.crt"\n')
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert exc.value.key == "mqtt.key_file"
