"""What kioskd reads and writes outside flows: outbox, acks, counters, collections, device events."""
from hal.device import DeviceEvent
from transactions import books, records


async def test_device_events_are_journalled_and_queued_for_the_hall(journal):
    seq = await books.device_event(journal, DeviceEvent("bv", "fault", "bill_jammed", "stacker jam", {"n": 1}))
    rows = await books.outbox(journal)
    assert rows[-1]["seq"] == seq and rows[-1]["payload"]["code"] == "bill_jammed"
    assert await books.ack(journal, seq) == len(rows)
    assert await books.outbox_depth(journal) == 0


async def test_counters_refill_and_collection(journal):
    await books.set_counter(journal, "hopper", "hopper", 500)
    await books.set_counter(journal, "card_stock", "3000", 50)
    txn = await journal.write(records.new_txn, "K", journal.boot, "topup", None, "collecting", 0.0)
    await journal.write(records.add_money, txn, [("cash_in", 5000, "bill")], 0.0, None, [("cashbox", "bill:5000", 1)])
    c = await books.counters(journal)
    assert c["hopper"]["hopper"] == 500 and c["card_stock"]["3000"] == 50 and c["cashbox_fen"] == 5000
    record = await books.collect(journal, "staff 12")
    assert record["total_fen"] == 5000 and (await books.counters(journal))["cashbox_fen"] == 0
    t = await books.transaction(journal, txn)
    assert t["ledger"]["cash_in"] == 5000
