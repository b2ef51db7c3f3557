"""新号入网 end to end: ID emulator over a pty, the camera's test source, real pcscd + vpcd + the
virtual USIM, the SIM dispenser and cash emulators, bosssim over HTTP, a real journal.

Each test checks what physically happened (bills stacked, coins paid, card taken or captured,
files on the USIM) and the BOSS's books (number opened, or released back to the pool), and that no
plaintext ID number, name or photo reached the kiosk's data directory, outbox, receipts or logs.
"""
from __future__ import annotations

import json
import logging

import pytest

from hal.protocols.usim import enc_imsi
from tests.e2e.conftest import BossSim, customer_inserting
from transactions import books, records
from transactions.customer import ScriptedCustomer
from transactions.ledger import Ledger
from transactions.service import available, run_flow

from .cards import BAD_CHECK, EXPIRED, GOOD
from .kiosk import id_kiosk, plaintext_in, scan_files

NUMBER = "13512340008"  # bosssim's pool: the first number ending in 8
PHOTO = bytes(range(256)) * 4  # the ID card's 1024-byte WLT photo, recognisable anywhere
CARD = dict(GOOD, photo=PHOTO.hex())


@pytest.fixture
async def bosssim(tmp_path):
    boss = BossSim(tmp_path / "boss.db")
    await boss.start()
    yield boss
    boss.stop()


@pytest.fixture
async def kiosk(tmp_path, bosssim, usim):
    async with id_kiosk(tmp_path, bosssim, usim) as k:
        yield k


def balanced(result) -> Ledger:
    led = Ledger(**result.ledger)
    assert led.cash_in == led.applied + led.change_paid + led.refunded + led.held_for_review, result.ledger
    return led


def pool(bosssim: BossSim) -> dict:
    import sqlite3
    conn = sqlite3.connect(bosssim.db)
    try:
        return {p: h for p, h in conn.execute("SELECT phone, held_by FROM number_pool")}
    finally:
        conn.close()


def take_sim(kiosk):
    def also(key, fmt):
        if key == "take_sim":
            kiosk.emu("crt571-sims", "take_card")
    return also


def no_leaks(kiosk, caplog, jpeg: bytes = b"", card: dict = GOOD, photo: bytes = PHOTO) -> None:
    """The kiosk's data directory (journal and outbox), receipts, emulator state and logs hold no
    plaintext PII."""
    assert scan_files(kiosk.state_dir, card, photo, jpeg) == {}
    receipts = "\n".join(kiosk.emu("escpos", "receipts")).encode()
    assert plaintext_in(receipts, card, photo, jpeg) == []
    assert plaintext_in(json.dumps(kiosk.emu("idcard", "state"), ensure_ascii=False).encode(), card, photo) == []
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records).encode()
    assert plaintext_in(logs, card, photo, jpeg) == []


async def test_a_new_number_is_sold_for_cash_written_to_a_blank_sim_and_dispensed(kiosk, bosssim, caplog):
    caplog.set_level(logging.DEBUG)
    assert (await available(kiosk.services))["new_number"]
    kiosk.place(**CARD)
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk, also=take_sim(kiosk))
    result = await run_flow(kiosk.services, "new_number", customer)

    assert result.state == "done", customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid, led.refunded) == (1000, 1000, 0, 0)
    assert kiosk.cash()["bills_stacked_fen"] == 1000
    ledger = await bosssim.ledger()
    opened = [op for op in ledger["ops"] if op["op"] == "open_number"]
    assert len(opened) == 1 and opened[0]["args"]["phone"] == NUMBER and opened[0]["key"] == f"{result.txn}:open"
    assert opened[0]["args"]["id_number"] == GOOD["id_number"]  # the BOSS holds it; the kiosk does not
    assert NUMBER in ledger["accounts"] and NUMBER not in pool(bosssim)
    # the card the customer took carries the BOSS's IMSI for this number and card
    card = kiosk.usim.card
    data = json.loads(json.dumps(ledger))  # noqa: F841 - the IMSI is derived by bosssim from phone and ICCID
    files = card.files()
    txn = await kiosk.txn(result.txn)
    iccid = next(s["outcome"]["iccid"] for s in txn["steps"] if s["kind"] == "write_sim")
    assert iccid == card.iccid
    from bosssim.state import Books
    imsi = Books.sim_card_data(None, NUMBER, iccid)["imsi"]  # bosssim's derivation, no state needed
    assert files["ADF.USIM/6F07"] == enc_imsi(imsi).hex().upper() and files["3F00/7FF0/FF02"] == "written"
    sims = kiosk.emu("crt571-sims", "state")
    assert (sims["dispensed"], sims["taken"], sims["captured"]) == (1, 1, 0)
    # the record: masks in the clear, everything else sealed to the hall's key
    assert txn["data"]["id_masked"] == "110105********002X" and txn["data"]["name_masked"] == "张**"
    record = kiosk.open_pii(txn["data"]["pii"])
    assert record["id_number"] == GOOD["id_number"] and record["name"] == GOOD["name"]
    assert record["id_photo_wlt"] == PHOTO and record["live_photo_jpeg"][:2] == b"\xff\xd8"
    rows = [r for r in await books.outbox(kiosk.journal) if r["topic"] == "txn" and r["payload"]["txn"] == result.txn]
    assert len(rows) == 1 and rows[0]["payload"]["data"]["pii"] == txn["data"]["pii"]
    receipt = kiosk.emu("escpos", "receipts")[-1]
    assert "新号入网凭条" in receipt and NUMBER in receipt and "110105********002X" in receipt and "张**" in receipt
    no_leaks(kiosk, caplog, record["live_photo_jpeg"])


async def test_no_number_is_held_for_a_customer_who_walks_away_at_the_price(kiosk, bosssim):
    kiosk.place(**CARD)
    customer = ScriptedCustomer(["8", NUMBER])  # then no answer: idle
    result = await run_flow(kiosk.services, "new_number", customer)
    assert result.state == "cancelled", customer.shown_keys
    assert pool(bosssim)[NUMBER] is None  # released at once, not after the BOSS's 10 minutes
    assert "number_released" in customer.shown_keys
    assert kiosk.emu("crt571-sims", "state")["dispensed"] == 0


@pytest.mark.parametrize("card,key", [(EXPIRED, "id_expired"), (BAD_CHECK, "id_invalid")])
async def test_an_expired_or_forged_card_ends_the_visit_before_any_money(kiosk, bosssim, card, key, caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.place(**card)
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])
    result = await run_flow(kiosk.services, "new_number", customer)
    assert result.state == "declined" and key in customer.shown_keys, customer.shown_keys
    assert customer.asked == [] and kiosk.cash()["bills_stacked_fen"] == 0
    assert all(h is None for h in pool(bosssim).values())
    txn = await kiosk.txn(result.txn)
    assert "pii" not in txn["data"]
    logs = "\n".join(r.getMessage() for r in caplog.records)
    reason = "expired" if key == "id_expired" else "bad_check_digit"
    assert f"ID card not accepted: {reason}" in logs  # the log says why, the screen says it to the customer
    assert plaintext_in(logs.encode(), card) == []


async def test_a_card_pulled_away_mid_read_is_asked_for_again(kiosk):
    kiosk.place(**CARD)
    kiosk.emu("idcard", "fail_next_read")

    def again(key, fmt):
        if key == "id_read_again":
            kiosk.place(**CARD)
    customer = ScriptedCustomer([], on_show=again)  # no answers: leaves at the first question
    result = await run_flow(kiosk.services, "new_number", customer)
    assert "id_read_again" in customer.shown_keys and "id_accepted" in customer.shown_keys
    assert result.state == "cancelled"


@pytest.mark.parametrize("sw", ["6982", "6983", "6A82"])
async def test_a_sim_refusing_the_write_is_captured_the_number_released_and_the_cash_paid_back(kiosk, bosssim, sw,
                                                                                            caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.place(**CARD)
    kiosk.services.hw.sim_dispenser  # noqa: B018
    armed = kiosk.sim.model("crt571-sims").cards

    def new_failing_card():
        from hal.emulators.usim import UsimCard
        kiosk.usim.card = UsimCard()
        kiosk.usim.card.control("fail_next", {"ins": "D6", "sw": sw})
    armed.on_new_card = new_failing_card
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk)
    result = await run_flow(kiosk.services, "new_number", customer)

    assert result.state == "refunded", customer.shown_keys
    assert "sim_write_failed" in customer.shown_keys
    led = balanced(result)
    assert (led.cash_in, led.applied, led.change_paid + led.refunded) == (1000, 0, 1000)
    assert kiosk.cash()["hopper_paid_fen"] + sum(v["fen"] for v in (await kiosk.txn(result.txn))["vouchers"]) == 1000
    sims = kiosk.emu("crt571-sims", "state")
    assert (sims["dispensed"], sims["taken"], sims["captured"]) == (1, 0, 1)
    assert pool(bosssim)[NUMBER] is None
    assert not [op for op in (await bosssim.ledger())["ops"] if op["op"] == "open_number"]
    counts = await kiosk.journal.read(records.counters)
    assert counts["sim_reject"] == {"sims": 1}
    assert any("SIM write failed" in r.getMessage() for r in caplog.records)


async def test_pcscd_gone_is_a_clear_message_a_captured_card_and_the_money_back(kiosk, bosssim, pcscd, caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.place(**CARD)
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])

    def stop_pcscd(key, fmt):
        if key == "writing_sim":
            pcscd.stop()
    customer.on_show = customer_inserting([1000], kiosk=kiosk, also=stop_pcscd)
    try:
        result = await run_flow(kiosk.services, "new_number", customer)
    finally:
        if pcscd.pid is None:
            pcscd.start()
    assert result.state == "refunded", customer.shown_keys
    assert "sim_reader_fault" in customer.shown_keys or "sim_no_card" in customer.shown_keys, customer.shown_keys
    balanced(result)
    assert kiosk.emu("crt571-sims", "state")["captured"] == 1 and pool(bosssim)[NUMBER] is None
    assert (await kiosk.journal.read(records.counters))["sim_reject"] == {"sims": 1}  # stock: the card in the bin
    assert any("SIM write failed" in r.getMessage() for r in caplog.records)


async def test_the_scan_finds_plaintext_where_there_is_some(kiosk, bosssim, tmp_path):
    """A scan that cannot fail is no scan: the BOSS's own books hold the ID number and name."""
    kiosk.place(**CARD)
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])
    customer.on_show = customer_inserting([1000], kiosk=kiosk, also=take_sim(kiosk))
    assert (await run_flow(kiosk.services, "new_number", customer)).state == "done"
    found = scan_files(tmp_path, GOOD, PHOTO)
    assert any(path.endswith("boss.db") and {"id number", "name"} <= set(hits) for path, hits in found.items()), found
    assert not [p for p in found if "/state/" in p]
