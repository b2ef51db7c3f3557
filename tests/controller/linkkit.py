"""A stand-in hall for the link tests: an MQTT 5 client on the real broker that sees what the kiosk
publishes, acks (optionally with resend_from), says the hall is online/offline, sends commands
and answers BOSS requests. The kiosk side under test is always the real code."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller.config import Config, load
from controller.link import HallLink
from controller.outbox import Outbox
from transactions import Journal, records

V5 = aiomqtt.ProtocolVersion.V5


def unique() -> str:
    """A kiosk id of its own per test: sessions are persistent, so a shared id would inherit acks."""
    return f"K-{uuid.uuid4().hex[:8]}"


def kiosk_config(tmp: Path, port: int, kiosk: str = "K-LINK-1", hall: str = "H-LINK", extra: str = "") -> Config:
    path = tmp / "kiosk.toml"
    path.write_text(f"""
[kiosk]
id = "{kiosk}"
hall = "{hall}"
state_dir = "{tmp}/state"
runtime_dir = "{tmp}/run"

[mqtt]
host = "127.0.0.1"
port = {port}
telemetry_interval_s = 3600.0
{extra}
""")
    return load(path)


@dataclass
class Got:
    topic: str
    leaf: str
    body: Any
    props: Any = None


@dataclass
class Hall:
    """The hall's side of one kiosk's topics."""

    client: aiomqtt.Client
    hall: str
    kiosk: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seen: list[Got] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"kiosk/v1/{self.hall}/{self.kiosk}/"

    async def _reader(self) -> None:
        async for m in self.client.messages:
            t = str(m.topic)
            try:
                body = json.loads(m.payload)
            except ValueError:
                body = bytes(m.payload)
            got = Got(t, t[len(self.base):] if t.startswith(self.base) else t, body, m.properties)
            self.seen.append(got)
            await self.queue.put(got)

    async def next(self, *leaves: str, timeout: float = 10.0, where: Any = None) -> Got:
        """The next message on one of ``leaves`` (others are skipped but kept in ``seen``)."""
        async with asyncio.timeout(timeout):
            while True:
                got = await self.queue.get()
                if (not leaves or got.leaf in leaves) and (where is None or where(got)):
                    return got

    async def reply(self, request: Got, body: Any, correlation: bytes | None = None) -> None:
        """Answer a request on its response topic with its correlation data (what halld does)."""
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = correlation or request.props.CorrelationData
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.client.publish(request.props.ResponseTopic, raw, qos=1, properties=props)

    async def find(self, *leaves: str, where: Any = None, timeout: float = 10.0) -> Got:
        """Like ``next`` but also looks at what has already arrived (order between leaves is free)."""
        for got in self.seen:
            if (not leaves or got.leaf in leaves) and (where is None or where(got)):
                return got
        return await self.next(*leaves, where=where, timeout=timeout)

    async def records(self, n: int, timeout: float = 10.0) -> list[Got]:
        return [await self.next("txn", "event", timeout=timeout) for _ in range(n)]

    async def ack(self, seq: int, resend_from: int | None = None) -> None:
        body: dict[str, Any] = {"schema": 1, "msg_seq": seq}
        if resend_from is not None:
            body["resend_from"] = resend_from
        await self.client.publish(self.base + "ack", json.dumps(body), qos=1)

    async def state(self, online: bool) -> None:
        await self.client.publish(f"hall/v1/{self.hall}/state",
                                  json.dumps({"schema": 1, "online": online, "ts": time.time(), "worker": "test"}),
                                  qos=1, retain=True)

    async def command(self, name: str, payload: Any, reply: bool = True, timeout: float = 10.0) -> Any:
        """Publish cmd/{name} with a response topic and correlation data; return the reply's body."""
        props = Properties(PacketTypes.PUBLISH)
        corr = uuid.uuid4().bytes
        if reply:
            props.ResponseTopic = self.base + "cmdresp/halld"  # the one the broker's ACL lets a kiosk answer on
            props.CorrelationData = corr
        if isinstance(payload, dict) and "id" not in payload and "deadline" not in payload:  # as halld sends it
            payload = {**payload, "id": uuid.uuid4().hex, "deadline": time.time() + timeout}
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(self.base + f"cmd/{name}", raw, qos=1, properties=props)
        if not reply:
            return None
        got = await self.next(where=lambda g: g.leaf.startswith("cmdresp/") and g.props.CorrelationData == corr,
                              timeout=timeout)
        assert got.topic == props.ResponseTopic
        return got.body


@contextlib.asynccontextmanager
async def hall_client(port: int, hall: str, kiosk: str, *, tls: Any = None, identifier: str | None = None):
    async with aiomqtt.Client("127.0.0.1", port, identifier=identifier or f"hall-{uuid.uuid4().hex[:6]}",
                              protocol=V5, tls_context=tls, timeout=5) as client:
        h = Hall(client, hall, kiosk)
        await client.subscribe(h.base + "#", qos=1)
        reader = asyncio.get_running_loop().create_task(h._reader())
        try:
            yield h
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


async def clear_hall_state(port: int, hall: str) -> None:
    """Retained hall state outlives a test on the session broker: start each test with none."""
    async with aiomqtt.Client("127.0.0.1", port, protocol=V5, timeout=5) as c:
        await c.publish(f"hall/v1/{hall}/state", b"", qos=1, retain=True)


async def enqueue(journal: Journal, n: int, outbox: Outbox | None = None, topic: str = "event") -> list[int]:
    seqs = []
    for i in range(n):
        seqs.append(await journal.write(records.enqueue, topic, {"kind": "test", "n": i}, time.time()))
    if outbox is not None:
        outbox.wake()
        await outbox.refresh()
    return seqs


@contextlib.asynccontextmanager
async def kiosk_link(config: Config, *, window: int = 64, stall_s: float = 10.0, max_outbox: int = 20000,
                     setup: Any = None, warn: int | None = None):
    """The real Journal + Outbox + HallLink as kioskd composes them (without devices)."""
    async with Journal(Path(config.kiosk.state_dir) / "journal.db", kiosk=config.kiosk.id) as journal:
        outbox = Outbox(journal, max_outbox, window=window, stall_s=stall_s, warn=warn)
        await outbox.load()

        async def status() -> dict[str, Any]:
            return {"kiosk": config.kiosk.id, "hall": config.kiosk.hall, "outbox_depth": outbox.depth,
                    "alarms": outbox.alarms()}

        link = HallLink(config, journal.boot, status, outbox)
        link.backoff_min_s = 0.05
        if setup is not None:
            setup(link)  # subscriptions are made at connect: register handlers first
        async with link:
            yield link, journal, outbox


async def until(predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition the code under test makes true (polled; bounded by ``timeout``)."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)
