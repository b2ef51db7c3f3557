"""Case 5 of issue 16: a command the hall gave up on never runs later, and a retry never runs
twice — message expiry at the broker, a deadline in the payload checked by kioskd, and an id
(idempotency key) kioskd runs once. Real mosquitto (TLS, ACL), real halld, real kioskd."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp

from hall.halld import _props
from tests.hall.kiosk_client import staff_headers

from .conftest import halld, online


async def api_command(h, name: str, args: dict, timeout: float, **extra) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=await staff_headers(h, "admin")) as http:
        async with http.post(f"http://127.0.0.1:{h.http_port}/api/kiosks/K1/cmd/{name}",
                             json={"args": args, "hall": "H1", "timeout": timeout, **extra}) as r:
            return r.status, await r.json()


async def raw_command(h, name: str, body: dict, expiry: int | None = None) -> dict:
    """What a replaying broker (or a bridge keeping old messages) delivers: halld's own session,
    a payload written by the test."""
    cid = f"test-{uuid.uuid4().hex[:8]}"
    future = asyncio.get_running_loop().create_future()
    h.commands._waiting[cid.encode()] = future
    try:
        props = _props(ResponseTopic=f"kiosk/v1/H1/K1/cmdresp/{h.worker}", CorrelationData=cid.encode(),
                       MessageExpiryInterval=expiry)
        await h._publish(f"kiosk/v1/H1/K1/cmd/{name}", json.dumps(body).encode(), props=props)
        return await asyncio.wait_for(future, 15)
    finally:
        h.commands._waiting.pop(cid.encode(), None)


def runs(kioskd, name: str) -> int:
    return sum(1 for line in kioskd.log().splitlines() if '"command done"' in line and f'"{name}"' in line)


async def test_a_command_that_timed_out_is_not_applied_when_the_kiosk_comes_back(hall_broker, pki, kioskd_k1, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h:
        kioskd_k1.start()
        await online(h)
        kioskd_k1.stop()  # away (a reboot, the network): its broker session keeps its commands
        before = kioskd_k1.config.read_text()
        sent = time.monotonic()
        status, reply = await api_command(h, "set_config", {"key": "flows.idle_timeout", "value": 77}, timeout=2)
        assert (status, reply["code"]) == (504, "timeout")  # staff are told it did not happen
        await asyncio.sleep(max(0.0, sent + 3.5 - time.monotonic()))  # past the command's 2 s expiry
        kioskd_k1.start()
        await online(h)
        status, reply = await api_command(h, "request_telemetry", {}, timeout=10)
        assert (status, reply["ok"]) == (200, True)
        assert kioskd_k1.config.read_text() == before
        assert runs(kioskd_k1, "set_config") == 0


async def test_a_replayed_command_past_its_deadline_is_refused_and_a_retry_runs_once(hall_broker, pki, kioskd_k1, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h:
        kioskd_k1.start()
        await online(h)
        stale = {"schema": 1, "id": "replayed-1", "deadline": time.time() - 3600, "args": {"service": "topup"}}
        reply = await raw_command(h, "disable_service", stale)  # no broker expiry: only the payload says
        assert (reply["ok"], reply["error"]["code"]) == (False, "expired")
        assert runs(kioskd_k1, "disable_service") == 0

        retry = {"schema": 1, "id": "telemetry-once", "deadline": time.time() + 30, "args": {}}
        first = await raw_command(h, "request_telemetry", retry, expiry=30)
        again = await raw_command(h, "request_telemetry", retry, expiry=30)  # the same id: a retry
        assert first["ok"] and again == first
        assert runs(kioskd_k1, "request_telemetry") == 1

        # and through the API: a caller's retry with the same key gets the first answer
        a = await api_command(h, "request_telemetry", {}, timeout=10, key="staff-retry-1")
        b = await api_command(h, "request_telemetry", {}, timeout=10, key="staff-retry-1")
        assert a == b and a[0] == 200
        assert runs(kioskd_k1, "request_telemetry") == 2
