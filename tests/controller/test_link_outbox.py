"""The outbox over a real broker (docs/mqtt.md "Records and acks"): in order, a window in flight,
delivered only on halld's ack, rewound on resend_from / stall / reconnect / hall back, held while
the hall is offline, and an outbox_full alarm that lifts when it drains."""
from __future__ import annotations

import asyncio

import json

from transactions import books, records

from .linkkit import clear_hall_state, enqueue, hall_client, kiosk_config, kiosk_link, unique, until


def seqs(got) -> list[int]:
    return [g.body["msg_seq"] for g in got]


async def sentinel(link, hall) -> None:
    """Telemetry from the same client: once it arrives, anything published before it has too."""
    await link.publish_telemetry()
    await hall.next("telemetry")


async def test_a_window_of_rows_goes_out_in_order_and_only_an_ack_delivers_them(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config, window=16) as (link, journal, outbox):
        await enqueue(journal, 40, outbox)
        first = await hall.records(16)
        assert seqs(first) == list(range(1, 17))  # in order, 16 in flight without any ack
        await until(lambda: outbox.sent == 16)
        await sentinel(link, hall)
        assert max(seqs(g for g in hall.seen if g.leaf in ("txn", "event"))) == 16  # the window is full: nothing more
        assert await books.outbox_depth(journal) == 40  # PUBACKs came back; still nothing is delivered

        await hall.ack(10)  # room for 10 more
        assert seqs(await hall.records(10)) == list(range(17, 27))
        await until(lambda: outbox.acked == 10)
        assert await books.outbox_depth(journal) == 30

        await hall.ack(26)
        assert seqs(await hall.records(14)) == list(range(27, 41))
        await hall.ack(40)
        await until(lambda: outbox.depth == 0)
        assert first[0].body["schema"] == 1 and first[0].body["kind"] == "test"


async def test_resend_from_rewinds_to_the_hole(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config, window=8) as (link, journal, outbox):
        await enqueue(journal, 8, outbox)
        assert seqs(await hall.records(8)) == list(range(1, 9))
        await hall.ack(3, resend_from=4)  # "I have 1..3, then a hole at 4"
        assert seqs(await hall.records(5)) == [4, 5, 6, 7, 8]
        await until(lambda: outbox.acked == 3)
        assert outbox.rewinds >= 1


async def test_acks_that_stall_make_the_kiosk_send_again(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config, stall_s=0.3) as (link, journal, outbox):
        await enqueue(journal, 3, outbox)
        assert seqs(await hall.records(3)) == [1, 2, 3]
        assert seqs(await hall.records(3)) == [1, 2, 3]  # no ack within stall_s: the same rows again
        await hall.ack(3)
        await until(lambda: outbox.depth == 0)


async def test_malformed_acks_are_ignored(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config) as (link, journal, outbox):
        await enqueue(journal, 2, outbox)
        await hall.records(2)
        for junk in (b"\xff\xfe", b"[]", b'{"msg_seq": "2"}', b'{"msg_seq": true}', b'{"msg_seq": 2, "resend_from": 0}'):
            await hall.client.publish(hall.base + "ack", junk, qos=1)
        await hall.ack(1)
        await until(lambda: outbox.acked == 1)
        assert await books.outbox_depth(journal) == 1 and not link.task.done()


async def test_while_the_hall_is_offline_the_outbox_is_held(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config) as (link, journal, outbox):
        await hall.state(False)
        await until(lambda: link.hall_online is False and outbox.holding)
        await enqueue(journal, 5, outbox)
        await sentinel(link, hall)
        assert not [g for g in hall.seen if g.leaf in ("txn", "event")]
        await hall.state(True)  # the hall is back: everything goes
        assert seqs(await hall.records(5)) == [1, 2, 3, 4, 5]
        await hall.ack(5)
        await until(lambda: outbox.depth == 0)


async def test_a_hall_restart_makes_the_kiosk_send_the_unacked_rows_again(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, kiosk_link(config) as (link, journal, outbox):
        await hall.state(True)
        await enqueue(journal, 4, outbox)
        assert seqs(await hall.records(4)) == [1, 2, 3, 4]
        await hall.ack(2)
        await hall.state(False)  # halld's will: it went down before committing 3 and 4
        await until(lambda: outbox.holding)
        await hall.state(True)
        assert seqs(await hall.records(2)) == [3, 4]
        await hall.ack(4)
        await until(lambda: outbox.depth == 0)


async def test_the_outbox_survives_a_broker_outage(tmp_path):
    from hall.broker import free_port, start_broker

    port = free_port()
    b = start_broker(tmp_path / "mosq", port=port)
    kid = unique()
    config = kiosk_config(tmp_path, port, kiosk=kid)
    try:
        async with kiosk_link(config) as (link, journal, outbox):
            async with hall_client(port, "H-LINK", kid, identifier="hall-outage") as hall:
                await enqueue(journal, 3, outbox)
                await hall.records(3)
                await hall.ack(1)
                await until(lambda: outbox.acked == 1)
            b.stop()
            await until(lambda: not link.connected.is_set())
            await enqueue(journal, 2, outbox)  # finished while the broker is down: journalled, waiting
            b = start_broker(tmp_path / "mosq", port=port)
            async with hall_client(port, "H-LINK", kid, identifier="hall-outage") as hall:
                await until(lambda: link.connected.is_set())
                got = await hall.records(4)
                assert seqs(got) == [2, 3, 4, 5]  # everything after the last ack, in order
                await hall.ack(5)
                await until(lambda: outbox.depth == 0)
            assert link.connects >= 2
            # one pump and one telemetry loop, those of the live connection: before, each lost
            # connection left its own running (gather does not stop the siblings of a failed task)
            loops = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if not t.done()]
            assert loops.count("HallLink._pump") == 1 and loops.count("HallLink._telemetry_loop") == 1, loops
    finally:
        b.stop()


async def test_a_kiosk_restart_keeps_its_session_and_gets_acks_sent_while_it_was_away(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall:
        async with kiosk_link(config) as (link, journal, outbox):
            await enqueue(journal, 3, outbox)
            await hall.records(3)
        await hall.ack(3)  # the kiosk is down; its persistent session queues the ack at the broker
        async with kiosk_link(config) as (link, journal, outbox):
            # delivered from the session, not re-acked by us; the depth follows once commit_acks has
            # refreshed it (acked is set just before that await: reading depth at once failed 1 in ~5 runs)
            await until(lambda: outbox.acked == 3 and outbox.depth == 0)
            assert await books.outbox_depth(journal) == 0
            assert link.session == 2  # a new boot session, the same MQTT session


async def test_a_full_outbox_raises_outbox_full_and_lifts_it_when_drained(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    await clear_hall_state(broker.port, "H-LINK")
    async with hall_client(broker.port, "H-LINK", kid) as hall, \
            kiosk_link(config, max_outbox=5) as (link, journal, outbox):
        await hall.state(False)
        await until(lambda: outbox.holding)
        await enqueue(journal, 5, outbox)
        assert not outbox.full  # at the limit is not over it
        await enqueue(journal, 1, outbox)
        assert outbox.full and outbox.depth == 7  # six rows and the alarm's own event
        alarm = (await journal.read(records.outbox_pending, 6, 10))[0]["payload"]
        assert alarm["kind"] == "alarm" and alarm["code"] == "outbox_full" and alarm["raised"] is True

        await hall.state(True)
        await hall.records(7)
        await hall.ack(7)
        await until(lambda: not outbox.full)
        lifted = (await journal.read(records.outbox_pending, 7, 10))[0]["payload"]
        assert lifted["code"] == "outbox_full" and lifted["raised"] is False
        got = await hall.next("event", where=lambda g: g.body.get("code") == "outbox_full")
        assert got.body["raised"] is False and got.body["msg_seq"] == 8
        await hall.ack(8)
        await until(lambda: outbox.depth == 0)
        assert not outbox.full


async def test_birth_is_retained_and_the_will_says_offline_with_the_same_session(tmp_path, broker):
    kid = unique()
    config = kiosk_config(tmp_path, broker.port, kiosk=kid)
    async with hall_client(broker.port, "H-LINK", kid) as hall:
        async with kiosk_link(config) as (link, journal, outbox):
            birth = await hall.next("status", where=lambda g: g.body["online"])
            assert birth.body["session"] == link.session and birth.body["schema"] == 1
            assert birth.body["kiosk"] == kid and birth.body["outbox_depth"] == 0
        goodbye = await hall.next("status")
        assert goodbye.body["online"] is False and goodbye.body["session"] == birth.body["session"]
    assert json.loads(json.dumps(goodbye.body))  # plain JSON
