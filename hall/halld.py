"""`halld`, the hall server: the wiring of store, writer, BOSS gateway, commands and HTTP API.

One worker = one `Halld`: an MQTT v5 client (TLS with its own certificate when given), a writer
thread, the API. Several workers split the kiosks' records and BOSS requests through shared
subscriptions (`$share/halld/kiosk/v1/+/+/<leaf>`); statuses (retained births, which shared
subscriptions never deliver) and command replies are subscribed unshared by every worker.
Each worker publishes the retained `hall/v1/H/state` online, with a will saying offline; when a
sibling's will or goodbye says offline while this worker lives, it says online again (a kiosk
holds its outbox while the hall is offline). docs/hall.md; the contract is docs/mqtt.md.

    halld serve --db hall.db | postgresql://... [--mqtt-host H --mqtt-port P] [--boss URL] ...
    halld fleet | txns | events | refunds | reviews | kiosk K | recent | cmd K NAME --args JSON
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import socket
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import queries, rollups
from . import web as console
from .api import Reader, make_app, start_api
from .commands import Commands
from .db import connect
from .gateway import Gateway
from .pahoio import lean, share_property_tables
from .store import LEAVES, Ack, Inbound, Store
from .web_guard import Guard
from .writer import Writer

log = logging.getLogger("halld")

SHARE_GROUP = "halld"
SHARED_LEAVES = ("txn", "event", "telemetry", "boss/req")
BACKOFF_MAX_S = 30.0


@dataclass
class HalldConfig:
    db: str = "hall.db"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    worker: str = "halld"  # MQTT client id; with TLS the certificate's CN is used instead
    halls: list[str] = field(default_factory=list)  # announced in hall/v1/H/state; learnt from births too
    boss_url: str | None = None
    boss_timeout_s: float = 5.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int | None = 8470  # None: no HTTP API; 0: any free port
    http_names: list[str] = field(default_factory=list)  # Host names the API answers to besides its address
    fleet: dict[str, list[str]] | None = None  # {hall: [kiosks]}: messages of others are quarantined
    enrol: Any = None  # hall.enrol.EnrolConfig: serve first-boot enrolment over HTTPS

    def tls(self) -> ssl.SSLContext | None:
        if not self.ca_file:
            return None
        from provisioning.certs import tls_context

        return tls_context(self.ca_file, self.cert_file, self.key_file)


class Halld:
    def __init__(self, config: HalldConfig) -> None:
        self.config = config
        self.store = Store(config.fleet)
        self.stats: Counter[str] = Counter()  # the event loop's own counts (the store's are the writer's)
        self.halls: list[str] = list(dict.fromkeys(config.halls))
        self.connected = asyncio.Event()
        self.http_port: int | None = None
        self._client: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._mqtt: asyncio.Task | None = None
        self._writer = Writer(config.db, self.store, self._publish_acks)
        self._reader = Reader(config.db)
        transport = None
        if config.boss_url:
            from transactions.boss import HttpTransport

            transport = HttpTransport(config.boss_url)
        self.gateway = Gateway(transport, self._publish_reply, self.stats)
        # With TLS the broker takes the certificate's CN as client id and ACL user, and answers to
        # commands come back on cmdresp/{CN}: the worker's name is its certificate's.
        self.worker = _cn_of(config.cert_file) if config.cert_file else config.worker
        if self.worker != config.worker:
            log.info("worker name %s from the certificate (not %s)", self.worker, config.worker)
        self.commands = Commands(self.worker, self._publish_cmd, self._writer.call)
        self._api = None
        self.desk: Any = None
        self.enrolment: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> "Halld":
        await self._writer.__aenter__()
        if await self._writer.call(rollups.prepare):
            log.info("report rollups rebuilt in this machine's local time (UTC%+.1f h)", rollups.default_offset() / 3600)
        await self._writer.call(console.prepare)  # staff accounts, audit log, report index
        for hall in await self._reader(queries.halls):
            if hall not in self.halls:
                self.halls.append(hall)
        if self.config.http_port is not None:
            app = make_app(self._reader, self.commands, self.snapshot, Guard(self.config.http_names))
            desk = None
            if self.config.boss_url:  # the back office's own BOSS calls (hall/bossdesk.py)
                from .bossdesk import BossDesk

                desk = self.desk = BossDesk(self.config.boss_url, self.config.boss_timeout_s)
            console.install(app, self._reader, self._writer.call, self.commands, desk)  # login in front of all of it
            try:
                self._api, self.http_port = await start_api(app, self.config.http_host, self.config.http_port)
            except OSError as exc:  # the hall link matters more than the staff API: carry on without it
                log.error("HTTP API not started on %s:%s: %s", self.config.http_host, self.config.http_port, exc)
        if self.config.enrol is not None:
            from .enrol import Enrolment

            self.enrolment = Enrolment(self.config.enrol, self.config.db)
            await self.enrolment.start()
        self._mqtt = asyncio.get_running_loop().create_task(self._run(), name="halld-mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        client = self._client
        if client is not None:  # a clean goodbye; the will covers the unclean one
            try:
                async with asyncio.timeout(2):
                    for hall in self.halls:
                        await client.publish(f"hall/v1/{hall}/state", self._state(False), qos=1, retain=True)
            except Exception as exc:
                log.info("offline state not sent: %s", exc)
        # Python 3.11's wait_for can swallow a cancel that lands as aiomqtt connects: cancel until gone.
        while self._mqtt is not None and not self._mqtt.done():
            self._mqtt.cancel()
            await asyncio.wait({self._mqtt}, timeout=1)
        await self.gateway.aclose()
        if self.desk is not None:
            await self.desk.close()
        for task in list(self._tasks):
            task.cancel()
        if self._api is not None:
            await self._api.cleanup()
        if self.enrolment is not None:
            await self.enrolment.stop()
        await self._writer.__aexit__()
        await asyncio.to_thread(self._reader.close)

    def snapshot(self) -> dict[str, Any]:
        return {"worker": self.worker, "connected": self.connected.is_set(), "halls": self.halls,
                "batches": self._writer.batches, **(self.store.stats + self.stats)}

    # -- MQTT ------------------------------------------------------------------------------
    def _state(self, online: bool) -> bytes:
        return json.dumps({"schema": 1, "online": online, "ts": time.time(), "worker": self.worker}).encode()

    async def _run(self) -> None:
        import aiomqtt

        share_property_tables()
        cfg = self.config
        backoff = 1.0
        while True:
            will = aiomqtt.Will(f"hall/v1/{self.halls[0]}/state", self._state(False), qos=1, retain=True) \
                if self.halls else None
            try:
                async with aiomqtt.Client(cfg.mqtt_host, cfg.mqtt_port, identifier=self.worker,
                                          protocol=aiomqtt.ProtocolVersion.V5, will=will, tls_context=cfg.tls(),
                                          keepalive=30, timeout=10, max_inflight_messages=200,
                                          logger=logging.getLogger("halld.mqtt")) as client:
                    sock = client._client.socket()  # Nagle off, as controller/link.py no_delay says why
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    client._client.on_message = self._on_message  # before subscribing: see _on_message
                    lean(client._client)  # batched socket reads and writes: hall/pahoio.py
                    for leaf in SHARED_LEAVES:
                        await client.subscribe(f"$share/{SHARE_GROUP}/kiosk/v1/+/+/{leaf}", qos=1)
                    await client.subscribe("kiosk/v1/+/+/status", qos=1)
                    await client.subscribe(f"kiosk/v1/+/+/cmdresp/{self.worker}", qos=1)
                    await client.subscribe("hall/v1/+/state", qos=1)
                    for hall in self.halls:
                        await client.publish(f"hall/v1/{hall}/state", self._state(True), qos=1, retain=True)
                    self._client = client
                    self.connected.set()
                    backoff = 1.0
                    scheme = "mqtts" if cfg.ca_file else "mqtt"
                    print(f"halld: listening on {scheme}://{cfg.mqtt_host}:{cfg.mqtt_port} as {self.worker}, storing in "
                          f"{_redact(cfg.db)}" + (f", API on http://{cfg.http_host}:{self.http_port}" if self.http_port
                                                  else ""), flush=True)
                    async for message in client.messages:  # stays empty (_on_message); ends when the link drops
                        self._route(message)
            except aiomqtt.MqttError as exc:  # a refused certificate looks like a timeout: say so only with TLS
                log.warning("broker %s://%s:%s: %s%s", "mqtts" if cfg.ca_file else "mqtt", cfg.mqtt_host,
                            cfg.mqtt_port, exc, " (TLS refused? check the certificates)" if cfg.ca_file else "")
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        """paho's callback, on the event loop (aiomqtt reads the socket there): each message goes
        straight to the router. aiomqtt's own path (a message object, a queue, and a task plus an
        asyncio.wait per message in its iterator) cost more CPU than the rest of the loop's work
        on a record. An exception here would make paho drop the link: log it instead."""
        try:
            self._route(message)
        except Exception:
            self.stats["route_errors"] += 1
            log.exception("message on %s not handled", getattr(message, "topic", "?"))

    def _route(self, message: Any) -> None:
        topic = str(message.topic)
        payload = bytes(message.payload or b"")
        props = message.properties
        parts = topic.split("/")
        if parts[:2] == ["hall", "v1"] and len(parts) == 4:
            return self._sibling_state(parts[2], payload)
        if len(parts) < 5 or parts[:2] != ["kiosk", "v1"]:
            return self._malformed(topic, "unknown topic")
        hall, kiosk, leaf = parts[2], parts[3], "/".join(parts[4:])
        if leaf == "status" and not payload:
            return  # someone deleted the retained birth (an empty retained message): nothing to store
        if leaf in LEAVES:
            self._writer.put(Inbound(hall, kiosk, leaf, payload, time.time()))
            if leaf == "status" and hall not in self.halls:
                self._learn_hall(hall)
        elif leaf == "boss/req":
            self.gateway.submit(hall, kiosk, payload, getattr(props, "ResponseTopic", None),
                                getattr(props, "CorrelationData", None), getattr(props, "MessageExpiryInterval", None))
        elif leaf.startswith("cmdresp/"):
            if not self.commands.on_reply(topic, payload, getattr(props, "CorrelationData", None)):
                self.stats["cmdresp_unmatched"] += 1
        else:
            self._malformed(topic, "unknown topic")

    def _malformed(self, topic: str, why: str) -> None:
        self.stats["malformed"] += 1
        log.warning("message on %s dropped: %s", topic, why)

    def _learn_hall(self, hall: str) -> None:
        self.halls.append(hall)
        log.info("hall %s seen for the first time: announcing it online", hall)
        self._spawn(self._publish(f"hall/v1/{hall}/state", self._state(True), retain=True))

    def _sibling_state(self, hall: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if (isinstance(body, dict) and body.get("online") is False and body.get("worker") != self.worker
                and hall in self.halls and self.connected.is_set()):
            log.info("worker %s left hall %s offline; this worker is alive: online again", body.get("worker"), hall)
            self._spawn(self._publish(f"hall/v1/{hall}/state", self._state(True), retain=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, props: Any = None) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("not connected to the broker")
        await client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def _publish_acks(self, acks: list[Ack]) -> None:
        """After the writer's commit (never before: the kiosk forgets what we ack)."""
        for ack in acks:
            self.stats["acks"] += 1
            self._spawn(self._publish_quiet(ack.topic, ack.payload()))

    async def _publish_quiet(self, topic: str, payload: bytes) -> None:
        try:
            await self._publish(topic, payload)
        except Exception as exc:  # link down: the kiosk rewinds after reconnecting and gets a new ack
            log.info("ack on %s not sent: %s", topic, exc)

    async def _publish_reply(self, topic: str, payload: bytes, correlation: bytes, expiry: int | None) -> None:
        await self._publish(topic, payload, props=_props(CorrelationData=correlation, MessageExpiryInterval=expiry))

    async def _publish_cmd(self, topic: str, payload: bytes, response_topic: str, correlation: bytes,
                           expiry_s: int) -> None:
        await self._publish(topic, payload, props=_props(ResponseTopic=response_topic, CorrelationData=correlation,
                                                         MessageExpiryInterval=expiry_s))


def _props(**values: Any) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        if value is not None:
            setattr(props, name, value)
    return props


def _cn_of(cert_file: str) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _redact(url: str) -> str:
    """A PostgreSQL URL may carry a password: never print it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


async def serve(db: str, host: str = "127.0.0.1", port: int = 1883, ready: asyncio.Event | None = None,
                config: HalldConfig | None = None) -> None:
    """Run until SIGTERM/SIGINT; a clean stop commits what is queued and says the hall is offline."""
    config = config or HalldConfig(db=db, mqtt_host=host, mqtt_port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Halld(config) as halld:
        if ready is not None:
            await halld.connected.wait()
            ready.set()
        await stop.wait()
        log.info("stopping")


# The first halld's helpers, still used by demo/ and the README.
def fleet(db_path: str) -> list[dict]:
    db = connect(db_path)
    try:
        return queries.fleet(db)
    finally:
        db.close()


def transactions(db_path: str, n: int = 20) -> list[dict]:
    db = connect(db_path)
    try:
        return [{**t.pop("payload"), **t} for t in queries.txns(db, limit=n)]
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
