"""The hall link's security on a real Mosquitto (design.md "Security and privacy"; docs/security.md).

A denied publish is acked and dropped silently, so every "cannot" is checked from the subscriber
side: the denied message goes first, then an allowed sentinel from the same client; once the
sentinel has arrived the denied one would have arrived before it (QoS 1, one publisher, in order).
"""
from __future__ import annotations

import asyncio
import ssl
import uuid

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hall.mosquitto_secure import KIOSK_READS, KIOSK_WRITES, acl_text, config_text
from provisioning.certs import CertError

V5 = aiomqtt.ProtocolVersion.V5


def connect(broker, ctx: ssl.SSLContext | None, identifier: str | None = None, **kw) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=identifier, protocol=V5, tls_context=ctx,
                          timeout=kw.pop("timeout", 5), **kw)


async def collect_until(client: aiomqtt.Client, sentinel: bytes) -> list[tuple[str, bytes]]:
    """Every message received up to and including the one whose payload is `sentinel`."""
    got = []
    async with asyncio.timeout(5):
        async for m in client.messages:
            got.append((str(m.topic), bytes(m.payload)))
            if got[-1][1] == sentinel:
                return got
    raise AssertionError("unreachable")


def tag() -> bytes:
    return uuid.uuid4().hex.encode()


async def test_a_kiosk_cannot_publish_as_another_kiosk_another_hall_or_the_hall(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
            connect(secure_broker, pki.context("K1"), "K1") as k1:
        await halld.subscribe("kiosk/v1/#", qos=1)
        await halld.subscribe("hall/v1/#", qos=1)
        t = tag()
        denied = [
            "kiosk/v1/H1/K2/txn",        # as kiosk K2
            "kiosk/v1/H2/K1/txn",        # its own id under another hall
            "kiosk/v1/H1/K1/cmd/reboot",  # a command to itself
            "kiosk/v1/H1/K1/ack",        # a forged ack
            "kiosk/v1/H1/K1/resp/x",     # a forged BOSS answer
            "hall/v1/H1/state",          # the hall's birth
            "kiosk/v1/H1/K1/other",      # a leaf not in the topic tree
        ]
        for topic in denied:
            await k1.publish(topic, t + b"-denied", qos=1)
        await k1.publish("kiosk/v1/H1/K1/event", t, qos=1)
        got = await collect_until(halld, t)
    assert got == [("kiosk/v1/H1/K1/event", t)]


async def test_a_kiosk_cannot_send_commands_to_another_kiosk(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
            connect(secure_broker, pki.context("K2"), "K2") as k2, \
            connect(secure_broker, pki.context("K1"), "K1") as k1:
        await halld.subscribe("kiosk/v1/#", qos=1)
        await k2.subscribe("kiosk/v1/H1/K2/cmd/#", qos=1)
        t = tag()
        await k1.publish("kiosk/v1/H1/K2/cmd/payout", b'{"fen": 10000}', qos=1)
        await k1.publish("kiosk/v1/H1/K1/telemetry", t, qos=1)
        assert await collect_until(halld, t) == [("kiosk/v1/H1/K1/telemetry", t)]
        # K2 itself still gets real commands: the command topic works, only K1 is refused
        await halld.publish("kiosk/v1/H1/K2/cmd/ping", t, qos=1)
        assert await collect_until(k2, t) == [("kiosk/v1/H1/K2/cmd/ping", t)]


async def test_a_kiosk_cannot_read_another_kiosks_commands(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
            connect(secure_broker, pki.context("K2"), "K2") as k2, \
            connect(secure_broker, pki.context("K1"), "K1") as k1:
        await k2.subscribe("kiosk/v1/H1/K2/cmd/#", qos=1)
        for snoop in ("kiosk/v1/H1/K2/cmd/#", "kiosk/v1/#", "#", "kiosk/v1/+/+/ack"):
            await k1.subscribe(snoop, qos=1)  # granted or refused, it must deliver nothing of K2's
        await k1.subscribe("kiosk/v1/H1/K1/cmd/#", qos=1)
        t = tag()
        await halld.publish("kiosk/v1/H1/K2/cmd/open-door", t + b"-for-K2", qos=1)
        await halld.publish("kiosk/v1/H1/K2/ack", b'{"seq": 7}', qos=1)
        await halld.publish("kiosk/v1/H1/K1/cmd/ping", t, qos=1)
        assert await collect_until(k1, t) == [("kiosk/v1/H1/K1/cmd/ping", t)]
        assert await collect_until(k2, t + b"-for-K2") == [("kiosk/v1/H1/K2/cmd/open-door", t + b"-for-K2")]


async def test_a_kiosk_cannot_read_other_kiosks_reports(secure_broker, pki):
    async with connect(secure_broker, pki.context("K2"), "K2") as k2, \
            connect(secure_broker, pki.context("K1"), "K1") as k1, \
            connect(secure_broker, pki.context("halld"), "halld") as halld:
        await k1.subscribe("kiosk/v1/#", qos=1)
        await k1.subscribe("kiosk/v1/H1/K1/ack", qos=1)
        t = tag()
        await k2.publish("kiosk/v1/H1/K2/txn", b'{"seq": 1, "fen": 5000}', qos=1)
        await k1.publish("kiosk/v1/H1/K1/txn", b'{"seq": 1}', qos=1)  # a kiosk does not read its own reports either
        await halld.publish("kiosk/v1/H1/K1/ack", t, qos=1)
        assert await collect_until(k1, t) == [("kiosk/v1/H1/K1/ack", t)]


async def test_halld_reads_every_report_and_answers_on_the_kiosks_response_topics(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
            connect(secure_broker, pki.context("K3"), "K3") as k3:
        await halld.subscribe("$share/halld/kiosk/v1/#", qos=1)  # how workers split the load
        await k3.subscribe("kiosk/v1/H2/K3/#", qos=1)  # everything it may read under its subtree
        await k3.subscribe("hall/v1/H2/state", qos=1)
        t = tag()
        for leaf in KIOSK_WRITES:
            await k3.publish(f"kiosk/v1/H2/K3/{leaf}", leaf.encode(), qos=1)
        req = Properties(PacketTypes.PUBLISH)
        req.ResponseTopic = "kiosk/v1/H2/K3/resp/boss"
        req.CorrelationData = t
        await k3.publish("kiosk/v1/H2/K3/boss/req", t, qos=1, properties=req)
        seen = []
        async with asyncio.timeout(5):
            async for m in halld.messages:
                seen.append(str(m.topic))
                if bytes(m.payload) == t:
                    answer_to, corr = m.properties.ResponseTopic, m.properties.CorrelationData
                    break
        assert seen == [f"kiosk/v1/H2/K3/{leaf}" for leaf in (*KIOSK_WRITES, "boss/req")]

        ans = Properties(PacketTypes.PUBLISH)
        ans.CorrelationData = corr
        await halld.publish(answer_to, b'{"balance_fen": 1200}', qos=1, properties=ans)
        await halld.publish("hall/v1/H2/state", b'{"online": true}', qos=1)
        cmd = Properties(PacketTypes.PUBLISH)
        cmd.ResponseTopic = "kiosk/v1/H2/K3/cmdresp/halld"
        await halld.publish("kiosk/v1/H2/K3/cmd/ping", b"{}", qos=1, properties=cmd)
        await halld.publish("kiosk/v1/H2/K3/ack", t, qos=1)
        got = await collect_until(k3, t)
        assert [topic for topic, _ in got] == ["kiosk/v1/H2/K3/resp/boss", "hall/v1/H2/state",
                                               "kiosk/v1/H2/K3/cmd/ping", "kiosk/v1/H2/K3/ack"]

        await k3.publish("kiosk/v1/H2/K3/cmdresp/halld", t + b"-pong", qos=1)  # the kiosk answers a command
        got = await collect_until(halld, t + b"-pong")  # after halld's own four (it reads all of kiosk/v1/#)
        assert got[-1] == ("kiosk/v1/H2/K3/cmdresp/halld", t + b"-pong")


async def test_the_client_id_is_the_certificate_cn_so_a_kiosk_cannot_kick_halld_off(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld:
        await halld.subscribe("kiosk/v1/#", qos=1)
        async with connect(secure_broker, pki.context("K1"), "halld", username="halld") as k1:
            t = tag()
            await k1.publish("kiosk/v1/H1/K2/cmd/reboot", t + b"-denied", qos=1)  # the user name is ignored too
            await k1.publish("kiosk/v1/H1/K1/status", t, qos=1)
            assert await collect_until(halld, t) == [("kiosk/v1/H1/K1/status", t)]


async def test_a_certificate_outside_the_fleet_gets_no_topic(secure_broker, pki):
    async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
            connect(secure_broker, pki.context("K9"), "K9") as k9:
        await halld.subscribe("kiosk/v1/#", qos=1)
        t = tag()
        await k9.publish("kiosk/v1/H1/K9/status", t + b"-denied", qos=1)
        await halld.publish("kiosk/v1/H1/K9/ack", t, qos=1)  # sentinel: halld hears its own (it reads kiosk/v1/#)
        assert await collect_until(halld, t) == [("kiosk/v1/H1/K9/ack", t)]
    # once enrolled (fleet list + SIGHUP) the same certificate works
    from tests.hall.conftest import FLEET

    secure_broker.set_fleet({**FLEET, "H1": [*FLEET["H1"], "K9"]})
    try:
        async with connect(secure_broker, pki.context("halld"), "halld") as halld, \
                connect(secure_broker, pki.context("K9"), "K9") as k9:
            await halld.subscribe("kiosk/v1/#", qos=1)
            t = tag()
            await k9.publish("kiosk/v1/H1/K9/status", t, qos=1)
            assert await collect_until(halld, t) == [("kiosk/v1/H1/K9/status", t)]
    finally:
        secure_broker.set_fleet(FLEET)


@pytest.mark.parametrize("how", ["no certificate", "certificate from another CA", "plain TCP"])
async def test_a_client_without_a_fleet_certificate_is_refused(secure_broker, pki, how):
    if how == "no certificate":
        ctx = ssl.create_default_context(cafile=str(pki.dir / "ca.crt"))
    elif how == "certificate from another CA":
        ctx = pki.context("halld", rogue=True)
    else:
        ctx = None
    with pytest.raises(aiomqtt.MqttError):
        async with asyncio.timeout(10):
            async with connect(secure_broker, ctx, "halld", timeout=1) as c:
                await c.subscribe("kiosk/v1/#", qos=1)  # TLS 1.3 reports a refused client cert after the handshake


def test_the_broker_config_has_one_tls_listener_and_no_anonymous_access(tmp_path):
    conf = config_text(8883, tmp_path / "ca.crt", tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "acl",
                       tmp_path, bind="0.0.0.0")
    lines = conf.splitlines()
    assert [l for l in lines if l.startswith(("listener", "port"))] == ["listener 8883 0.0.0.0"]
    for must in ("require_certificate true", "use_identity_as_username true", "use_username_as_clientid true",
                 "allow_anonymous false"):
        assert must in lines
    assert "max_queued_messages 0" not in lines  # on 2.0.11 a denied QoS 1 publish would then disconnect


def test_the_acl_grants_each_kiosk_only_its_own_leaves():
    acl = acl_text({"H1": ["K1"]})
    k1 = acl.split("user K1\n")[1].strip().splitlines()
    assert k1 == ([f"topic write kiosk/v1/H1/K1/{leaf}" for leaf in (*KIOSK_WRITES, "cmdresp/halld")]
                  + [f"topic read kiosk/v1/H1/K1/{leaf}" for leaf in KIOSK_READS]
                  + ["topic read hall/v1/H1/state"])
    assert "pattern" not in acl  # no rule applies to every user


@pytest.mark.parametrize("fleet", [{"H1": ["K/1"]}, {"H1": ["K#"]}, {"H+": ["K1"]}, {"H1": ["halld"]},
                                   {"H1": ["K1"], "H2": ["K1"]}])
def test_ids_that_would_change_an_acl_rule_are_refused(fleet):
    with pytest.raises(CertError):
        acl_text(fleet)
