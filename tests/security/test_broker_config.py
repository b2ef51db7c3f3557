"""`halld broker-config` (issue 18 item 7, with issue 16's limits): the files it writes run a real
mosquitto that speaks TLS only, takes fleet certificates only, gives each kiosk its own topics,
and applies the limits. halld's log names the scheme it really uses."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid

import aiomqtt
import pytest

from hall.broker import free_port
from hall.mosquitto_secure import PACKET_LIMIT
from provisioning.certs import demo, tls_context

from .conftest import timeout

V5 = aiomqtt.ProtocolVersion.V5


def halld_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hall.halld", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def written(tmp_path):
    pki = tmp_path / "pki"
    demo(pki, ["K1", "K2"])
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('# the hall\'s kiosks\nH1 = ["K1"]\nH2 = ["K2"]\n')
    port = free_port()
    out = tmp_path / "conf"
    done = halld_cli("broker-config", "--fleet", str(fleet), "--ca", str(pki / "ca.crt"), "--cert", str(pki / "server.crt"),
                     "--key", str(pki / "server.key"), "--out", str(out), "--port", str(port), "--bind", "127.0.0.1",
                     "--persistence", str(tmp_path), *(["--user", "root"] if os.geteuid() == 0 else []))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'mosquitto.conf'}" in done.stdout
    return pki, out, port


@pytest.fixture
def mosquitto(written, tmp_path):
    pki, out, port = written
    log = open(tmp_path / "mosquitto.log", "wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(out / "mosquitto.conf")], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not open its port"
            time.sleep(0.02)  # polling a port that is not open yet; bounded by the deadline
    yield pki, port
    proc.terminate()
    proc.wait(10)
    log.close()


def test_the_written_config_is_tls_only_with_the_limits(written):
    pki, out, port = written
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert [l for l in conf if l.startswith(("listener", "port"))] == [f"listener {port} 127.0.0.1"]
    for line in ("require_certificate true", "allow_anonymous false", "use_identity_as_username true",
                 f"max_packet_size {PACKET_LIMIT}", f"acl_file {(out / 'acl').resolve()}"):
        assert line in conf
    acl = (out / "acl").read_text()
    assert "user K1\ntopic write kiosk/v1/H1/K1/status" in acl and "user K2\ntopic write kiosk/v1/H2/K2/status" in acl


async def test_the_written_config_runs_mosquitto_that_keeps_kiosks_apart(mosquitto):
    pki, port = mosquitto

    def client(cn: str) -> aiomqtt.Client:
        return aiomqtt.Client("localhost", port, identifier=cn, protocol=V5, timeout=5,
                              tls_context=tls_context(pki / "ca.crt", pki / f"{cn}.crt", pki / f"{cn}.key"))

    async with client("halld") as hall, client("K1") as k1:
        await hall.subscribe("kiosk/v1/#", qos=1)
        sentinel = uuid.uuid4().hex.encode()
        await k1.publish("kiosk/v1/H2/K2/txn", b"as K2", qos=1)  # denied: not its subtree
        await k1.publish("kiosk/v1/H1/K1/txn", sentinel, qos=1)
        async with timeout(10, "K1's own record"):
            async for m in hall.messages:
                assert m.payload == sentinel, m.topic
                break
    with pytest.raises(aiomqtt.MqttError):  # plain MQTT on the TLS port
        async with asyncio.timeout(10):
            async with aiomqtt.Client("127.0.0.1", port, protocol=V5, timeout=2) as plain:
                await plain.subscribe("#")


def test_a_fleet_file_with_an_unsafe_id_is_refused(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('H1 = ["K1", "K#"]\n')
    done = halld_cli("broker-config", "--fleet", str(fleet), "--ca", "x", "--cert", "x", "--key", "x", "--out",
                     str(tmp_path / "out"))
    assert done.returncode == 2 and "K#" in done.stderr and not (tmp_path / "out").exists()


async def test_halld_says_mqtts_with_tls_and_does_not_guess_tls_without_it(mosquitto, tmp_path):
    pki, port = mosquitto
    log = tmp_path / "halld.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp_path / "h.db"),
                                 "--mqtt-host", "localhost", "--mqtt-port", str(port), "--ca", str(pki / "ca.crt"),
                                 "--cert", str(pki / "halld.crt"), "--key", str(pki / "halld.key"), "--http", "off"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        async with timeout(30, "halld's listening line"):
            while "listening on" not in log.read_text():
                await asyncio.sleep(0.05)  # polling halld's log file; bounded by the timeout
    finally:
        proc.terminate()
        proc.wait(10)
    assert f"listening on mqtts://localhost:{port} as halld" in log.read_text()

    log2 = tmp_path / "halld-plain.log"
    with open(log2, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hall.halld", "serve", "--db", str(tmp_path / "h2.db"),
                                 "--mqtt-port", str(free_port()), "--http", "off"], stdout=out, stderr=subprocess.STDOUT)
    try:
        async with timeout(30, "halld's connection failure in its log"):
            while "broker mqtt://" not in log2.read_text():
                await asyncio.sleep(0.05)  # polling halld's log file; bounded by the timeout
    finally:
        proc.terminate()
        proc.wait(10)
    assert "TLS" not in log2.read_text()
