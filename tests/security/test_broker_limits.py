"""Case 1 of issue 16: one kiosk cannot fill the hall broker. A packet over the limit disconnects
the kiosk before the broker holds it, and a kiosk can write no topic beyond its fixed leaves, so it
holds at most one retained message on each.
Checked from the subscriber side (a refused publish is acked and dropped silently)."""
from __future__ import annotations

import asyncio
import uuid

import aiomqtt
import pytest

from hall.mosquitto_secure import PACKET_LIMIT

from .conftest import timeout

V5 = aiomqtt.ProtocolVersion.V5


def client(broker, pki, cn: str, **kw) -> aiomqtt.Client:
    return aiomqtt.Client("localhost", broker.port, identifier=cn, protocol=V5, tls_context=pki.context(cn),
                          timeout=5, **kw)


async def until_sentinel(c: aiomqtt.Client, sentinel: bytes) -> list[tuple[str, int, bool]]:
    got = []
    async with timeout(10, "the sentinel"):
        async for m in c.messages:
            got.append((str(m.topic), len(m.payload), bool(m.retain)))
            if m.payload == sentinel:
                return got
    raise AssertionError("unreachable")


@pytest.mark.parametrize("size", [PACKET_LIMIT + 1000, 20 * PACKET_LIMIT])
async def test_a_packet_over_the_limit_disconnects_the_kiosk_and_reaches_no_one(hall_broker, pki, size):
    async with client(hall_broker, pki, "halld") as hall:
        await hall.subscribe("kiosk/v1/#", qos=1)
        with pytest.raises(aiomqtt.MqttError):
            async with client(hall_broker, pki, "K1") as k1:
                await k1.publish("kiosk/v1/H1/K1/txn", b"z" * size, qos=1, retain=True, timeout=10)
                async with asyncio.timeout(10):
                    await k1.publish("kiosk/v1/H1/K1/txn", b"after", qos=1)  # the connection is gone
        sentinel = uuid.uuid4().hex.encode()
        async with client(hall_broker, pki, "K1") as k1:  # it may come back, and is heard
            await k1.publish("kiosk/v1/H1/K1/txn", b"y" * (PACKET_LIMIT - 1000), qos=1)  # under the limit
            await k1.publish("kiosk/v1/H1/K1/event", sentinel, qos=1)
        got = await until_sentinel(hall, sentinel)
    assert [(t, n) for t, n, _ in got] == [("kiosk/v1/H1/K1/txn", PACKET_LIMIT - 1000),
                                            ("kiosk/v1/H1/K1/event", len(sentinel))]


async def test_a_kiosk_holds_at_most_one_retained_message_per_leaf(hall_broker, pki):
    sentinel = uuid.uuid4().hex.encode()
    async with client(hall_broker, pki, "K1") as k1:
        for i in range(30):  # any number of subtopics was writable under cmdresp/#
            await k1.publish(f"kiosk/v1/H1/K1/cmdresp/junk-{i}", b"j" * 1000, qos=1, retain=True)
            await k1.publish(f"kiosk/v1/H1/K1/cmdresp/halld/deeper-{i}", b"j" * 1000, qos=1, retain=True)
            await k1.publish("kiosk/v1/H1/K1/cmdresp/halld", b"r" * 1000, qos=1, retain=True)  # the one allowed
        await k1.publish("kiosk/v1/H1/K1/status", sentinel, qos=1, retain=True)
    try:
        async with client(hall_broker, pki, "halld") as hall:  # what a reconnecting halld is sent again
            await hall.subscribe("kiosk/v1/H1/K1/cmdresp/#", qos=1)
            await hall.subscribe("kiosk/v1/H1/K1/status", qos=1)
            got = await until_sentinel(hall, sentinel)
        assert sorted(t for t, _, retained in got if retained) == ["kiosk/v1/H1/K1/cmdresp/halld",
                                                                    "kiosk/v1/H1/K1/status"]
    finally:
        async with client(hall_broker, pki, "K1") as k1:  # the module's broker is shared: clear them
            for topic in ("kiosk/v1/H1/K1/cmdresp/halld", "kiosk/v1/H1/K1/status"):
                await k1.publish(topic, b"", qos=1, retain=True)
