"""Case 6 of issue 16: a record's payload cannot claim another kiosk or hall. The topic is bound
to the certificate by the broker's ACL; a payload that disagrees with its topic is quarantined
(and acked, so an honest kiosk with a bug does not stall), never shown as the claimed kiosk."""
from __future__ import annotations

import json

import aiohttp

from tests.hall.kiosk_client import staff_headers

from .conftest import halld, kiosk


def rec(seq: int, **fields) -> bytes:
    return json.dumps({"schema": 1, "msg_seq": seq, "txn": f"K1-1-{seq}", "seq": seq, "service": "topup",
                       "state": "done", "amount_fen": 5000, **fields}).encode()


async def test_a_record_claiming_another_kiosk_is_quarantined_not_shown_as_that_kiosk(hall_broker, pki, tmp_path):
    async with halld(hall_broker, pki, str(tmp_path / "h.db")) as h, kiosk(hall_broker, pki, "K1") as k1:
        await k1.publish("txn", rec(1, kiosk="K2"))
        await k1.publish("txn", rec(2, hall="H2"))
        await k1.publish("txn", rec(3, txn="K2-1-3"))  # a transaction id of K2's
        await k1.publish("event", json.dumps({"schema": 1, "msg_seq": 4, "kind": "door", "kiosk": "K2",
                                              "hall": "H1"}).encode())
        await k1.publish("telemetry", json.dumps({"schema": 1, "kiosk": "K2", "outbox_depth": 0}).encode(), qos=1)
        await k1.publish("txn", rec(5))
        assert (await k1.ack_reaching(5))["msg_seq"] == 5
        api = f"http://127.0.0.1:{h.http_port}/api"
        async with aiohttp.ClientSession(headers=await staff_headers(h, "viewer")) as http:
            async with http.get(f"{api}/txns?limit=100") as r:
                txns = await r.json()
            async with http.get(f"{api}/events?limit=100") as r:
                events = await r.json()
            async with http.get(f"{api}/quarantine?kiosk=K1") as r:
                held = await r.json()
    assert [(t["kiosk"], t["txn"], t["payload"].get("kiosk", "K1")) for t in txns] == [("K1", "K1-1-5", "K1")]
    assert events == []
    assert sorted((q["leaf"], q["msg_seq"]) for q in held) == [("event", 4), ("telemetry", None), ("txn", 1),
                                                                ("txn", 2), ("txn", 3)]
    assert all("K2" in q["reason"] or "H2" in q["reason"] for q in held)


async def test_a_kiosk_outside_the_fleet_list_is_quarantined_even_if_the_broker_let_it_in(hall_broker, pki, tmp_path):
    """Defence in depth: halld given the fleet (the file the ACL is made from) refuses any other
    (hall, kiosk) pair, should a broker be misconfigured."""
    async with halld(hall_broker, pki, str(tmp_path / "h.db"), fleet={"H1": ["K2"]}) as h, \
            kiosk(hall_broker, pki, "K1") as k1, kiosk(hall_broker, pki, "K2") as k2:
        await k1.publish("txn", rec(1))
        await k2.publish("txn", json.dumps({"schema": 1, "msg_seq": 1, "txn": "K2-1-1"}).encode())
        assert (await k2.ack_reaching(1))["msg_seq"] == 1
        await h._writer.call(lambda db: None)  # K1's record, published first, is committed by now
        assert (h.snapshot()["quarantined"], h.snapshot()["records"]) == (1, 1)
