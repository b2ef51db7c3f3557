"""A long outage under continuous traffic, on a simulated clock: 10 minutes with the hall up, 70
minutes with the broker unreachable, 20 minutes with the hall saying it is offline, then the hall
back — 100 simulated minutes in a few real seconds. The kiosk side is the real Journal + Outbox +
HallLink (through a TCP proxy to the real broker); the hall acks like halld (its contiguous high water).

What must hold: nothing lost (every row reaches the hall), order per kiosk kept (msg_seq and the
transactions' seq arrive increasing), the outbox bounded (cash visits refused over max_outbox, so the
depth stays near it), outbox_high raised well before outbox_full, both lifted after the drain.
The long version with real time is bench/outage.py (docs/reliability.md "Long outage").
"""
from __future__ import annotations

import asyncio
import contextlib

from tests.support.tcpproxy import TcpProxy
from transactions import records

from .linkkit import clear_hall_state, hall_client, kiosk_config, kiosk_link, unique, until

MAX_OUTBOX, WARN = 120, 60
VISIT_EVERY_S = 15.0  # a cash customer every 15 simulated seconds
EVENT_EVERY_S = 300.0  # a device event every 5 simulated minutes
START = 1_780_000_000.0  # the simulated clock's epoch


class HallSide:
    """Acks what it received contiguously, as halld acks what it committed; keeps first arrivals."""

    def __init__(self, hall) -> None:
        self.hall = hall
        self.high = 0
        self.first: dict[int, dict] = {}  # msg_seq -> body, in the order they first arrived
        self.copies = 0

    async def run(self) -> None:
        while True:
            got = await self.hall.next("txn", "event", timeout=3600)
            seq = got.body["msg_seq"]
            if seq in self.first:
                self.copies += 1
                continue
            self.first[seq] = {"leaf": got.leaf, **got.body}
            while self.high + 1 in self.first:
                self.high += 1
            await self.hall.ack(self.high)


async def test_a_100_minute_outage_under_traffic_loses_nothing_keeps_order_and_bounds_the_outbox(tmp_path, broker):
    kid = unique()
    await clear_hall_state(broker.port, "H-LINK")
    async with TcpProxy(broker.port) as proxy:
        config = kiosk_config(tmp_path, proxy.port, kiosk=kid)
        async with hall_client(broker.port, "H-LINK", kid) as hall, \
                kiosk_link(config, max_outbox=MAX_OUTBOX, warn=WARN) as (link, journal, outbox):
            side = HallSide(hall)
            acker = asyncio.get_running_loop().create_task(side.run())
            clock = {"t": START}
            taken, refused, seq, max_depth, alarms = [], [], 0, 0, []

            async def minutes(n: float, phase: str) -> None:
                """``n`` simulated minutes of customers and device events, as fast as the journal takes them."""
                nonlocal seq, max_depth
                end = clock["t"] + n * 60
                next_event = clock["t"] + EVENT_EVERY_S
                while clock["t"] < end:
                    clock["t"] += VISIT_EVERY_S
                    now = clock["t"]
                    if outbox.depth > MAX_OUTBOX:  # transactions.service: no cash-taking flow over the limit
                        assert outbox.full
                        refused.append((phase, now))
                    else:
                        seq += 1
                        await journal.write(records.enqueue, "txn", {"schema": 1, "txn": f"{kid}-1-{seq}", "seq": seq,
                                                                     "service": "topup", "amount_fen": 1000,
                                                                     "state": "done", "finished_at": now}, now)
                        taken.append(seq)
                    if now >= next_event:
                        next_event += EVENT_EVERY_S
                        await journal.write(records.record_device_event, "printer", "fault", "paper_low", "", {}, now)
                    outbox.wake()
                    await outbox.refresh()
                    for code in ("outbox_high", "outbox_full"):
                        if code in outbox.alarms() and code not in [a[0] for a in alarms]:
                            alarms.append((code, now - START, outbox.depth))
                    max_depth = max(max_depth, outbox.depth)
                    await asyncio.sleep(0)  # the link and the acks run between customers, as in kioskd

            await until(lambda: link.connected.is_set(), what="link up")
            await minutes(10, "hall up")
            await until(lambda: outbox.depth == 0, timeout=20, what="drained while up")
            proxy.cut(refuse=True)  # the broker is unreachable: 70 minutes
            await until(lambda: not link.connected.is_set(), what="link down")
            await minutes(70, "broker down")
            await proxy.restore()
            await until(lambda: link.connected.is_set(), timeout=20, what="link back")
            await hall.state(False)  # the broker is back but halld is down: 20 minutes
            await until(lambda: outbox.holding, what="holding for the hall")
            await minutes(20, "hall offline")
            await hall.state(True)
            await until(lambda: outbox.depth == 0 and not outbox.alarms(), timeout=60, what="drained after the outage")
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker

    rows = side.first
    # nothing lost: every row of the journal's outbox reached the hall, msg_seq 1..N without a hole
    assert sorted(rows) == list(range(1, len(rows) + 1)) and side.high == len(rows)
    # order kept: first arrivals in msg_seq order, transactions in seq order, each transaction once
    assert list(rows) == sorted(rows)
    txn_seqs = [r["seq"] for r in rows.values() if r["leaf"] == "txn"]
    assert txn_seqs == taken == list(range(1, seq + 1))
    # the outbox is bounded: cash stopped over the limit, so only events and alarms pass it
    assert refused and {phase for phase, _ in refused} == {"broker down", "hall offline"}
    events_while_full = sum(1 for r in rows.values() if r["leaf"] == "event")
    assert MAX_OUTBOX < max_depth <= MAX_OUTBOX + 1 + events_while_full
    # the alarm comes well before the kiosk fills: outbox_high first, at WARN, minutes earlier
    (high, t_high, d_high), (full, t_full, d_full) = alarms
    assert (high, full) == ("outbox_high", "outbox_full") and d_high == WARN + 2 and d_full >= MAX_OUTBOX
    assert t_full - t_high >= 10 * 60
    codes = [(r.get("code"), r.get("raised")) for r in rows.values() if r.get("kind") == "alarm"]
    assert codes == [("outbox_high", True), ("outbox_full", True), ("outbox_full", False), ("outbox_high", False)]


def test_outbox_warn_must_come_before_max_outbox_and_defaults_to_half_of_it(tmp_path):
    import pytest

    from controller.config import ConfigError, load

    def config(flows: str):
        path = tmp_path / "kiosk.toml"
        path.write_text(f'[kiosk]\nid = "K1"\nhall = "H1"\nstate_dir = "{tmp_path}/s"\nruntime_dir = "{tmp_path}/r"\n'
                        f'[mqtt]\nhost = "127.0.0.1"\nport = 1883\n[flows]\n{flows}\n')
        return load(path)

    assert config("max_outbox = 400").flows.outbox_warn == 0  # kioskd uses 200
    assert config("max_outbox = 400\noutbox_warn = 300").flows.outbox_warn == 300
    with pytest.raises(ConfigError, match="flows.outbox_warn: must be 0 .* below flows.max_outbox \\(400\\)"):
        config("max_outbox = 400\noutbox_warn = 400")
