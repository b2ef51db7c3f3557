"""Case 3 of issue 16: a poison record is refused, kept in quarantine with its reason, and acked
— never a batch rolled back, never a kiosk whose outbox stops draining — while the neighbours'
records go on being stored."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.hall.kiosk_client import staff_headers

from .conftest import halld, kiosk

N = 200


def poison(seq: int) -> bytes:
    """Every kind of record the database cannot store, or the contract forbids, in turn."""
    good = {"schema": 1, "msg_seq": seq, "txn": f"K1-1-{seq}", "seq": seq, "service": "topup", "state": "done"}
    kind = (seq // 10) % 5
    if kind == 0:
        return json.dumps({**good, "amount_fen": 10 ** 30}).encode()  # beyond BIGINT
    if kind == 1:
        return json.dumps({**good, "phone": "138\ud800"}).encode()  # a lone surrogate (ensure_ascii escapes it)
    if kind == 2:
        return json.dumps(good).encode()[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"  # RecursionError
    if kind == 3:
        return json.dumps(good).encode()[:-1] + b',"amount_fen":NaN}'
    return json.dumps({**good, "amount_fen": 500, "vouchers": [{"code": "X", "fen": -(10 ** 20)}]}).encode()


def honest(kiosk: str, seq: int) -> bytes:
    return json.dumps({"schema": 1, "msg_seq": seq, "txn": f"{kiosk}-1-{seq}", "seq": seq, "service": "topup",
                       "state": "done", "amount_fen": 5000}).encode()


async def test_poison_records_are_quarantined_and_acked_and_the_neighbour_goes_on(hall_broker, pki, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h, \
            kiosk(hall_broker, pki, "K1") as k1, kiosk(hall_broker, pki, "K2") as k2:

        async def send(k, make) -> None:
            for seq in range(1, N + 1):
                await k.publish("txn", make(seq))

        await asyncio.gather(send(k1, lambda s: poison(s) if s % 10 == 0 else honest("K1", s)),
                             send(k2, lambda s: honest("K2", s)))
        assert (await k1.ack_reaching(N, timeout=30))["msg_seq"] == N  # the poison did not stall K1's outbox
        assert (await k2.ack_reaching(N, timeout=30))["msg_seq"] == N
        stats = h.snapshot()
        assert (stats["quarantined"], stats["records"], stats.get("rollbacks", 0)) == (N // 10, 2 * N - N // 10, 0)
        async with aiohttp.ClientSession(headers=await staff_headers(h, "viewer")) as http:
            async with http.get(f"http://127.0.0.1:{h.http_port}/api/quarantine?kiosk=K1&limit=1000") as r:
                held = await r.json()
            async with http.get(f"http://127.0.0.1:{h.http_port}/api/txns?limit=1000") as r:
                txns = await r.json()
    assert sorted(q["msg_seq"] for q in held) == list(range(10, N + 1, 10))
    reasons = {q["msg_seq"]: q["reason"] for q in held}
    assert ("surrogate" in reasons[10] and "nested too deep" in reasons[20] and "not JSON" in reasons[30]
            and "64 bits" in reasons[40] and "64 bits" in reasons[50]), reasons
    assert all(q["payload"] and q["size"] > 0 for q in held)  # kept as received, for staff
    assert sum(t["kiosk"] == "K1" for t in txns) == N - N // 10 and sum(t["kiosk"] == "K2" for t in txns) == N
