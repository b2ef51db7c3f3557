"""A bare MQTT client playing a kiosk by docs/mqtt.md, for halld's tests (kioskd has its own tests).

It publishes what the contract says a kiosk publishes and collects what halld sends back (acks,
BOSS replies, commands, hall state), so a test can wait for a message with a timeout.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hall.halld import Halld, HalldConfig


class FakeKiosk:
    def __init__(self, port: int, hall: str = "H1", kiosk: str = "K1", tls: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1") -> None:
        self.hall, self.kiosk = hall, kiosk
        self.base = f"kiosk/v1/{hall}/{kiosk}"
        self.client = aiomqtt.Client(host, port, identifier=kiosk, protocol=aiomqtt.ProtocolVersion.V5,
                                     tls_context=tls, timeout=5, max_inflight_messages=100)
        self.inbox: list[aiomqtt.Message] = []  # received, not yet taken by next()
        self._arrived = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "FakeKiosk":
        await self.client.__aenter__()
        for leaf in ("ack", "resp/#", "cmd/#"):
            await self.client.subscribe(f"{self.base}/{leaf}", qos=1)
        await self.client.subscribe(f"hall/v1/{self.hall}/state", qos=1)
        self._task = asyncio.get_running_loop().create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker is shared: leave no retained birth behind
            await self.client.publish(f"{self.base}/status", b"", qos=1, retain=True)
        while self._task and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1)
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        async for m in self.client.messages:
            async with self._arrived:
                self.inbox.append(m)
                self._arrived.notify_all()

    async def publish(self, leaf: str, body: dict | bytes, qos: int = 1, retain: bool = False, **props: Any) -> None:
        payload = body if isinstance(body, bytes) else json.dumps({"schema": 1, **body}).encode()
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)
            for name, value in props.items():
                setattr(properties, name, value)
        await self.client.publish(f"{self.base}/{leaf}", payload, qos=qos, retain=retain, properties=properties)

    async def birth(self, session: int = 1, **extra: Any) -> None:
        await self.publish("status", {"online": True, "session": session, "kiosk": self.kiosk, "hall": self.hall,
                                      "state": "ready", "outbox_depth": 0, **extra}, retain=True)

    async def txn(self, seq: int, **extra: Any) -> None:
        await self.publish("txn", {"msg_seq": seq, "txn": f"{self.kiosk}-1-{seq}", "seq": seq, "service": "topup",
                                   "state": "done", "amount_fen": 5000, **extra})

    async def next(self, topic_suffix: str, timeout: float = 10.0, where=lambda body: True) -> tuple[aiomqtt.Message, dict]:
        """Take the first message (received or still to come) whose topic ends with `topic_suffix`
        and whose body passes `where`; the others stay for later calls."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for m in self.inbox:
                    if str(m.topic).endswith(topic_suffix):
                        body = json.loads(m.payload)
                        if where(body):
                            self.inbox.remove(m)
                            return m, body
                await self._arrived.wait()

    async def ack_reaching(self, msg_seq: int, timeout: float = 10.0) -> dict:
        return (await self.next("/ack", timeout, lambda b: b["msg_seq"] >= msg_seq))[1]


@contextlib.asynccontextmanager
async def running_halld(port: int, db: str, **config: Any):
    config.setdefault("http_port", 0)
    async with Halld(HalldConfig(db=db, mqtt_port=port, **config)) as halld:
        async with asyncio.timeout(10):
            await halld.connected.wait()
        yield halld


async def birth_stored(halld: Halld, k: FakeKiosk, **status: Any) -> None:
    """Publish a birth and return once halld has committed it: halld announces a hall it sees for
    the first time right after queueing the birth, and a write queued after that commits after it."""
    await k.birth(**status)
    await k.next(f"hall/v1/{k.hall}/state", where=lambda b: b["online"])
    await halld._writer.call(lambda db: None)


async def staff_headers(halld: Halld, role: str = "admin") -> dict[str, str]:
    """An API token of a new staff account with `role`, as the Authorization header (hall/auth.py)."""
    import secrets

    from hall import auth

    name = f"{role}-{secrets.token_hex(4)}"
    pw_hash = await asyncio.to_thread(auth.hash_password, "correct horse battery")
    await halld._writer.call(auth.add_user, name, role, pw_hash, "test")
    token = await halld._writer.call(auth.new_token, name, "test", "test")
    return {"Authorization": f"Bearer {token}"}


def cli_token(db: str, role: str = "admin") -> str:
    """The same through `halld user add` and `halld user token`, for a halld run as a process."""
    import secrets
    import subprocess
    import sys

    name = f"{role}-{secrets.token_hex(4)}"
    subprocess.run([sys.executable, "-m", "hall.halld", "user", "add", name, "--role", role, "--password-stdin",
                    "--db", db], input="correct horse battery\n", text=True, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "hall.halld", "user", "token", name, "--db", db], text=True,
                         check=True, capture_output=True)
    return out.stdout.strip()
