"""The kiosk's MQTT link to the hall: birth/will status, events, telemetry (topic tree v1).

Thin for now: the hall-link issue grows it into the journal-backed outbox with halld's acks.
aiomqtt is imported here only, and only once the daemon is READY, to keep start-up lean.
"""
from __future__ import annotations

import asyncio
import collections
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


def topic(config: Config, leaf: str) -> str:
    return f"kiosk/v1/{config.kiosk.hall}/{config.kiosk.id}/{leaf}"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps({"schema": SCHEMA, **payload}, ensure_ascii=False, separators=(",", ":")).encode()


class HallLink:
    def __init__(self, config: Config, session: int, status: Callable[[], dict[str, Any]]) -> None:
        self.config = config
        self.session = session
        self.status = status  # the daemon's current status (devices, outbox, state)
        self.connected = asyncio.Event()
        self.pending: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=10_000)
        self._wake = asyncio.Event()
        self._client: Any = None
        self._task: asyncio.Task | None = None

    @property
    def task(self) -> asyncio.Task:
        assert self._task is not None
        return self._task

    def publish_event(self, payload: dict[str, Any]) -> None:
        """Queue an event (QoS 1); kept while the broker is away."""
        self.pending.append((topic(self.config, "event"), encode({"ts": time.time(), **payload})))
        self._wake.set()

    def _status_payload(self, online: bool) -> bytes:
        return encode({"online": online, "session": self.session, "ts": time.time(), **self.status()})

    async def _pump(self, client: Any) -> None:
        while True:
            while self.pending:
                leaf, payload = self.pending[0]
                await client.publish(leaf, payload, qos=1)
                self.pending.popleft()  # only after PUBACK
            self._wake.clear()
            await self._wake.wait()

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
                    await asyncio.gather(self._pump(client), self._telemetry(client))
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
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
