"""The kiosk's MQTT 5 link to the hall (docs/mqtt.md), with aiomqtt behind a thin interface of ours.

What the rest of kioskd sees: ``publish(leaf, payload, ...)``, ``on(leaf, handler)`` for what the
hall sends (acks, commands, BOSS replies), ``connected``, ``hall_online`` and ``may_send``.
aiomqtt and paho are imported here only, when the link starts (kioskd's start-up stays lean).

- Session: client id = kiosk id (= certificate CN under TLS), ``clean_start`` False with a session
  expiry, so the broker keeps our subscriptions and queues acks and commands while we are away.
- Birth and will: on connect a retained ``status`` (online, boot session, ...); the will is the
  same object with ``online: false``, fixed at connect time (a late will carries an old session).
- Reconnect with jittered exponential backoff: a hall of kiosks must not reconnect in step.
- ``hall/v1/{hall}/state``: while it says offline the outbox is held (``may_send`` cleared) and
  BOSS requests fail at once. No state seen yet counts as not offline.
- Telemetry every ``mqtt.telemetry_interval_s`` (QoS 0).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .config import Config
from .logs import fields
from .outbox import Outbox

log = logging.getLogger("kioskd.link")
mqtt_log = logging.getLogger("kioskd.link.mqtt")
mqtt_log.setLevel(logging.ERROR)  # aiomqtt warns once per publish beyond 10 in flight: our window is on purpose

SCHEMA = 1
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
CONNECT_TIMEOUT_S = 10.0  # a TLS refusal (no/foreign certificate) shows up as this timeout


class LinkDown(Exception):
    """Not connected to the hall broker. ``sent`` False: the message surely never left;
    True: it left but its PUBACK did not come back (the far end may have it)."""

    def __init__(self, message: str, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class Incoming:
    """A message from the hall, stripped of aiomqtt: the MQTT 5 request/response properties kept."""

    topic: str
    leaf: str  # the topic below kiosk/v1/H/K/ (or the whole topic outside it)
    payload: bytes
    response_topic: str | None = None
    correlation: bytes | None = None

    def json(self) -> Any:
        return json.loads(self.payload)


Handler = Callable[[Incoming], Any]  # may return an awaitable


def topic(config: Config, leaf: str) -> str:
    return f"kiosk/v1/{config.kiosk.hall}/{config.kiosk.id}/{leaf}"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps({"schema": SCHEMA, **payload}, ensure_ascii=False, separators=(",", ":")).encode()


def _matches(pattern: str, leaf: str) -> bool:
    return pattern == leaf or (pattern.endswith("/#") and leaf.startswith(pattern[:-1]))


def no_delay(client: Any) -> None:
    """TCP_NODELAY on the MQTT socket. paho leaves Nagle on, so every record/ack, BOSS request/reply
    and command/reply waited for a delayed TCP ACK: 89 ms per round trip on loopback, 0.8 ms
    without (docs/hall.md, bench/hall.py). aiomqtt owns paho's socket callbacks, hence after connect."""
    sock = client._client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HallLink:
    def __init__(self, config: Config, session: int, status: Callable[[], Awaitable[dict[str, Any]]],
                 outbox: Outbox | None = None, telemetry: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> None:
        self.config = config
        self.session = session
        self.status = status  # birth payload (docs/mqtt.md "Status"), without online/session/ts
        self.telemetry = telemetry or status
        self.outbox = outbox
        self.connected = asyncio.Event()
        self.may_send = asyncio.Event()  # connected and the hall not offline: the outbox drains
        self.hall_online: bool | None = None  # None: no hall/v1/H/state seen yet
        self.connects = 0
        self.backoff_min_s = BACKOFF_MIN_S
        self.on_hall: Callable[[bool | None], None] = lambda online: None
        self._handlers: list[tuple[str, Handler, bool]] = []
        self._client: Any = None
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._hall_topic = f"hall/v1/{config.kiosk.hall}/state"
        if outbox is not None:
            self.on("ack", lambda m: outbox.on_ack(_json_or_none(m)))

    @property
    def task(self) -> asyncio.Task:
        assert self._task is not None
        return self._task

    def topic(self, leaf: str) -> str:
        return topic(self.config, leaf)

    def on(self, leaf: str, handler: Handler, *, concurrent: bool = False) -> None:
        """Subscribe ``kiosk/v1/H/K/{leaf}`` (``cmd/#`` style wildcards at the end) for the link's
        life. ``concurrent``: each message in its own task (commands); else handled in order (acks)."""
        self._handlers.append((leaf, handler, concurrent))

    # -- sending ---------------------------------------------------------------------------------
    async def publish(self, leaf: str | None, payload: dict[str, Any], *, qos: int = 1, retain: bool = False,
                      topic: str | None = None, response_topic: str | None = None, correlation: bytes | None = None,
                      expiry_s: float | None = None, timeout: float = 10.0) -> None:
        """Publish ``{"schema":1, **payload}`` on our ``leaf`` (or a full ``topic``); ``LinkDown`` if not up."""
        client = self._client
        if client is None:
            raise LinkDown("hall link is down")
        props = None
        if response_topic is not None or correlation is not None or expiry_s is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
            if expiry_s is not None:
                props.MessageExpiryInterval = max(1, int(expiry_s + 0.999))
        import aiomqtt

        try:
            await client.publish(topic or self.topic(leaf or ""), encode(payload), qos=qos, retain=retain,
                                 properties=props, timeout=timeout)
        except aiomqtt.MqttCodeError as exc:  # refused before anything was written
            raise LinkDown(str(exc)) from None
        except aiomqtt.MqttError as exc:  # written, no PUBACK in time or the connection dropped meanwhile
            raise LinkDown(str(exc), sent=True) from None

    async def _status_payload(self, online: bool) -> dict[str, Any]:
        return {"online": online, "session": self.session, "ts": time.time(), **await self.status()}

    async def publish_status(self) -> None:
        """The retained status again (state or alarms changed); a no-op while the link is down."""
        if self._client is None:
            return
        try:
            await self.publish("status", await self._status_payload(True), retain=True)
        except LinkDown:
            pass

    async def publish_telemetry(self) -> dict[str, Any]:
        payload = {"ts": time.time(), **await self.telemetry()}
        await self.publish("telemetry", payload, qos=0)
        return payload

    # -- receiving -------------------------------------------------------------------------------
    def _hall_state(self, message: Incoming) -> None:
        body = _json_or_none(message)
        online = body.get("online") if isinstance(body, dict) else None
        if not isinstance(online, bool):
            if message.payload:  # an empty retained payload just clears the state
                log.warning("malformed hall state ignored", extra=fields(payload=message.payload[:120]))
            online = None
        was = self.hall_online
        if online != was:
            log.info("hall state", extra=fields(online=online))
        self.hall_online = online
        self._update_may_send()
        if self.outbox is not None:
            if was is False and online is not False:
                # the hall came back: what was in flight may have died with it. Rewind here, not in
                # the pump, which can miss an offline/online flip shorter than its wait.
                self.outbox.rewind(self.outbox.acked, "hall back")
            self.outbox.wake()  # a pump between batches notices the hold at once
        self.on_hall(online)

    def _update_may_send(self) -> None:
        if self._client is not None and self.hall_online is not False:
            self.may_send.set()
        else:
            self.may_send.clear()

    async def _receive(self, client: Any) -> None:
        prefix = self.topic("")
        async for message in client.messages:
            name = str(message.topic)
            props = message.properties
            incoming = Incoming(name, name[len(prefix):] if name.startswith(prefix) else name,
                                bytes(message.payload or b""),
                                getattr(props, "ResponseTopic", None) if props else None,
                                getattr(props, "CorrelationData", None) if props else None)
            if name == self._hall_topic:
                self._hall_state(incoming)
                continue
            for pattern, handler, concurrent in self._handlers:
                if name.startswith(prefix) and _matches(pattern, incoming.leaf):
                    if concurrent:
                        task = asyncio.get_running_loop().create_task(_guarded(handler, incoming))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    else:
                        await _guarded(handler, incoming)
                    break

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.mqtt.telemetry_interval_s)  # read each time: set_config applies
            await self.publish_telemetry()

    async def _pump(self) -> None:
        assert self.outbox is not None
        await self.outbox.pump(lambda leaf, payload: self.publish(leaf, payload), self.may_send)

    # -- the connection --------------------------------------------------------------------------
    def _client_args(self, will_payload: dict[str, Any]) -> dict[str, Any]:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        mqtt = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = mqtt.session_expiry_s
        args: dict[str, Any] = dict(
            identifier=self.config.kiosk.id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
            properties=props, keepalive=mqtt.keepalive_s, timeout=CONNECT_TIMEOUT_S, logger=mqtt_log,
            will=aiomqtt.Will(self.topic("status"), encode(will_payload), qos=1, retain=True),
            max_inflight_messages=max(20, self.outbox.window if self.outbox else 20),
        )
        if mqtt.ca_file:
            from provisioning.certs import tls_context

            args["tls_context"] = tls_context(mqtt.ca_file, mqtt.cert_file, mqtt.key_file)
        return args

    async def _run(self) -> None:
        import aiomqtt

        backoff = self.backoff_min_s
        mqtt = self.config.mqtt
        while True:
            try:
                birth = await self._status_payload(True)
                async with aiomqtt.Client(mqtt.host, mqtt.port, **self._client_args({**birth, "online": False})) as client:
                    no_delay(client)
                    for leaf in dict.fromkeys(h[0] for h in self._handlers):
                        await client.subscribe(self.topic(leaf), qos=1)
                    await client.subscribe(self._hall_topic, qos=1)
                    self._client = client
                    await client.publish(self.topic("status"), encode(birth), qos=1, retain=True)
                    self.connects += 1
                    self.connected.set()
                    self._update_may_send()
                    backoff = self.backoff_min_s
                    log.info("connected to hall broker", extra=fields(host=mqtt.host, port=mqtt.port,
                                                                      tls=bool(mqtt.ca_file), session=self.session))
                    if self.outbox is not None:
                        self.outbox.rewind(self.outbox.acked, "reconnect")
                    parts = [self._receive(client), self._telemetry_loop()]
                    if self.outbox is not None:
                        parts.append(self._pump())
                    await _together(*parts)
            except (aiomqtt.MqttError, LinkDown) as exc:
                if self.connected.is_set():
                    log.warning("hall link lost", extra=fields(error=str(exc)))
                else:
                    log.info("hall broker unreachable", extra=fields(host=mqtt.host, port=mqtt.port, error=str(exc),
                                                                    hint="TLS refused?" if mqtt.ca_file else ""))
            finally:
                self._client = None
                self.connected.clear()
                self._update_may_send()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # jitter: kiosks must not reconnect in step
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _lifetime(self) -> None:
        parts = [self._run()]
        if self.outbox is not None:
            parts.append(self.outbox.commit_acks())
        await asyncio.gather(*parts)

    async def __aenter__(self) -> "HallLink":
        self._task = asyncio.get_running_loop().create_task(self._lifetime(), name="hall-link")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:  # a clean goodbye; the will covers the unclean one
            try:
                await asyncio.wait_for(self.publish("status", await self._status_payload(False), retain=True), 2)
            except Exception as exc:  # broker gone during shutdown: the will says offline
                log.info("offline status not sent", extra=fields(error=repr(exc)))
        for task in list(self._tasks):
            task.cancel()
        # Python 3.11's wait_for can swallow a cancel that lands as the connect completes
        # (aiomqtt connects through it), so cancel until the task is really gone.
        while self._task and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)


def _json_or_none(message: Incoming) -> Any:
    try:
        return message.json()
    except (ValueError, RecursionError):  # RecursionError: nested too deep (json raises nothing else)
        return None


async def _guarded(handler: Handler, message: Incoming) -> None:
    """A handler's bug is logged, never allowed to take the link down."""
    try:
        result = handler(message)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler failed", extra=fields(topic=message.topic))


async def _together(*coros: Any) -> None:
    """Run a connection's loops together; the first to fail (the link is gone) stops the others.

    Not ``gather``: it leaves the siblings running when one fails, so every reconnect left an
    outbox pump and a telemetry loop behind, all sending through the next connection."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
