"""The kiosk's MQTT link to the hall: birth/will status, the journal's outbox, acks, telemetry.

The journal is the truth; MQTT carries a copy. Outbox rows (finished transactions, device events)
go out in order, each with its per-kiosk ``msg_seq``; a row counts as delivered only when halld
acks it (``.../ack`` carries the high-water msg_seq halld has committed), never on PUBACK.
Unacked rows are sent again after a reconnect or when acks stall; halld stores idempotently.
aiomqtt is imported here only, once the daemon is READY, to keep start-up lean.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, Callable

from .config import Config
from .logs import fields

log = logging.getLogger("kioskd.link")

SCHEMA = 1
BACKOFF_MAX_S = 60.0
BATCH = 100
ACK_STALL_S = 10.0  # sent but unacked for this long: send again from the last ack


def topic(config: Config, leaf: str) -> str:
    return f"kiosk/v1/{config.kiosk.hall}/{config.kiosk.id}/{leaf}"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps({"schema": SCHEMA, **payload}, ensure_ascii=False, separators=(",", ":")).encode()


class HallLink:
    def __init__(self, config: Config, session: int, status: Callable[[], dict[str, Any]], journal: Any) -> None:
        self.config = config
        self.session = session
        self.status = status  # the daemon's current status (devices, outbox, state)
        self.journal = journal
        self.connected = asyncio.Event()
        self.acked = 0  # high-water msg_seq halld has committed
        self.sent = 0
        self._waiting_since: float | None = None  # when the oldest unacked send went out
        self._wake = asyncio.Event()
        self._client: Any = None
        self._task: asyncio.Task | None = None
        self.on_depth: Callable[[int], None] = lambda depth: None

    @property
    def task(self) -> asyncio.Task:
        assert self._task is not None
        return self._task

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def _status_payload(self, online: bool) -> bytes:
        return encode({"online": online, "session": self.session, "ts": time.time(), **self.status()})

    async def _pump(self, client: Any) -> None:
        from transactions import books

        self.sent = self.acked  # after a (re)connect everything unacked goes again
        while True:
            waiting = self._waiting_since
            if self.sent > self.acked and waiting is not None and time.monotonic() - waiting > ACK_STALL_S:
                log.warning("acks stalled; resending", extra=fields(sent=self.sent, acked=self.acked))
                self.sent, self._waiting_since = self.acked, None
            rows = await books.outbox(self.journal, after_seq=self.sent, limit=BATCH)
            for row in rows:
                leaf = row["topic"] if row["topic"] in ("txn", "event") else "event"
                await client.publish(topic(self.config, leaf), encode({**row["payload"], "msg_seq": row["seq"]}), qos=1)
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                self.sent = row["seq"]
            if not rows:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except TimeoutError:
                    pass

    async def _acks(self, client: Any) -> None:
        from transactions import books

        ack_topic = topic(self.config, "ack")
        await client.subscribe(ack_topic, qos=1)
        async for message in client.messages:
            if str(message.topic) != ack_topic:
                continue
            try:
                seq = int(json.loads(message.payload)["msg_seq"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("malformed ack ignored", extra=fields(error=str(exc)))
                continue
            if seq > self.acked:
                await books.ack(self.journal, seq)
                self.acked = seq
                self._waiting_since = None if seq >= self.sent else time.monotonic()
                self.on_depth(await books.outbox_depth(self.journal))

    async def _telemetry(self, client: Any) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.telemetry_interval_s)
            await client.publish(topic(self.config, "telemetry"), encode({"ts": time.time(), **self.status()}), qos=0)

    async def _run(self) -> None:
        import aiomqtt

        mqtt = self.config.mqtt
        status_topic = topic(self.config, "status")
        will = aiomqtt.Will(status_topic, self._status_payload(False), qos=1, retain=True)
        backoff = 1.0
        while True:
            try:
                async with aiomqtt.Client(
                    mqtt.host,
                    mqtt.port,
                    identifier=self.config.kiosk.id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    will=will,
                    keepalive=mqtt.keepalive_s,
                    timeout=10,
                ) as client:
                    self._client = client
                    await client.publish(status_topic, self._status_payload(True), qos=1, retain=True)
                    self.connected.set()
                    backoff = 1.0
                    log.info("connected to hall broker", extra=fields(host=mqtt.host, port=mqtt.port))
                    await asyncio.gather(self._acks(client), self._pump(client), self._telemetry(client))
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    log.warning("hall link lost", extra=fields(error=str(exc)))
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter: a hall of kiosks must not reconnect in step
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def __aenter__(self) -> "HallLink":
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hall-link")
        return self

    async def __aexit__(self, *exc: object) -> None:
        client = self._client
        if client is not None:  # a clean goodbye; the will covers the unclean one
            try:
                await asyncio.wait_for(
                    client.publish(topic(self.config, "status"), self._status_payload(False), qos=1, retain=True), 2
                )
            except Exception as exc:  # broker gone during shutdown: the will says offline
                log.info("offline status not sent", extra=fields(error=repr(exc)))
        # Python 3.11's wait_for can swallow a cancel that lands as the connect completes
        # (aiomqtt connects through it), so cancel until the task is really gone.
        while self._task and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)
