"""Power cuts in the real-name flows: the cut lands right after a journalled boundary, the devices
and the BOSS live on (a SIM stays at the reader or the gate, the number stays held), the journal
is reopened as a new boot and recovery runs, as kioskd does at start.

Why in-process and not tests/crash's forked kioskd: the crash rig's devices are standalone
processes reached over TCP, and a SIM flow also needs pcscd, vpcd and the virtual USIM coupled to
the SIM dispenser's stack. Here the same boundary labels (``new_number:write_sim:intent``) are cut
by a hook on ``transactions.flow.boundary`` that raises ``PowerCut`` (a BaseException: no flow
code catches it, as nothing runs after a SIGKILL), and everything physical is as the cut left it.

The cases the issue names: paid but not written, written but not dispensed, number reserved and
customer gone; and the boundaries around them.
"""
from __future__ import annotations

import dataclasses

import pytest

from tests.e2e.conftest import customer_inserting
from transactions import recover, records
from transactions.customer import ScriptedCustomer
from transactions.service import run_flow

from .test_new_number import CARD, NUMBER, PHOTO, bosssim, pool  # noqa: F401 - fixture
from .cards import GOOD
from .kiosk import id_kiosk, scan_files


class PowerCut(BaseException):
    pass


@pytest.fixture
async def kiosk(tmp_path, bosssim, usim):  # noqa: F811
    async with id_kiosk(tmp_path, bosssim, usim) as k:
        yield k


async def cut_and_recover(kiosk, monkeypatch, label: str, customer) -> tuple[dict, object]:
    import transactions.flow as flow

    real = flow.boundary

    def hook(lbl: str) -> None:
        real(lbl)
        if lbl == label:
            raise PowerCut(lbl)
    monkeypatch.setattr(flow, "boundary", hook)
    with pytest.raises(PowerCut):
        await run_flow(kiosk.services, "new_number", customer)
    monkeypatch.setattr(flow, "boundary", real)
    (txn_id,) = await kiosk.journal.read(lambda c: [r[0] for r in c.execute(
        "SELECT id FROM transactions WHERE state = 'open'")])
    await kiosk.journal.close()  # the power comes back: a new boot of the same journal
    await kiosk.journal.open()
    services = dataclasses.replace(kiosk.services, journal=kiosk.journal)
    (rec,) = await recover(services)
    assert rec.txn == txn_id
    return await kiosk.txn(txn_id), rec


def buyer(kiosk, take: bool = True) -> ScriptedCustomer:
    customer = ScriptedCustomer(["8", NUMBER, "confirm"])

    def also(key, fmt):
        if key == "take_sim" and take:
            kiosk.emu("crt571-sims", "take_card")
    customer.on_show = customer_inserting([1000], kiosk=kiosk, also=also)
    return customer


def opened(ledger: dict) -> list:
    return [op for op in ledger["ops"] if op["op"] == "open_number"]


@pytest.mark.parametrize("label", ["new_number:sim_to_reader:outcome", "new_number:write_sim:intent",
                                   "new_number:write_sim:outcome", "new_number:boss_open_number:intent"])
async def test_paid_but_not_opened_the_sim_is_captured_the_number_released_the_cash_on_a_voucher(
        kiosk, bosssim, monkeypatch, label):
    kiosk.place(**CARD)
    txn, rec = await cut_and_recover(kiosk, monkeypatch, label, buyer(kiosk))
    assert txn["state"] == "refunded", (rec, txn["ledger"])
    assert txn["ledger"]["cash_in"] == 1000 and txn["ledger"]["applied"] == 0
    assert sum(v["fen"] for v in txn["vouchers"]) == 1000 and kiosk.cash()["hopper_paid_fen"] == 0
    sims = kiosk.emu("crt571-sims", "state")
    assert sims["position"] == "bin" and (sims["dispensed"], sims["captured"], sims["taken"]) == (1, 1, 0)
    assert pool(bosssim)[NUMBER] is None and not opened(await bosssim.ledger())
    kinds = [(s["kind"], s["resolved_by"]) for s in txn["steps"]]
    assert ("capture_sim", "recovery") in kinds and ("boss_release", "recovery") in kinds
    assert kiosk.open_pii(txn["data"]["pii"])["id_number"] == GOOD["id_number"]  # the record survives, sealed


@pytest.mark.parametrize("label", ["new_number:boss_open_number:outcome", "new_number:dispense_sim:intent",
                                   "new_number:dispense_sim:outcome", "new_number:at_gate:state"])
async def test_written_and_opened_but_not_handed_over_the_number_is_the_customers_and_the_sim_kept(
        kiosk, bosssim, monkeypatch, label):
    kiosk.place(**CARD)
    txn, rec = await cut_and_recover(kiosk, monkeypatch, label, buyer(kiosk, take=False))
    assert txn["state"] == "done", (rec, txn["ledger"])
    assert txn["ledger"]["applied"] == 1000 and txn["vouchers"] == []
    assert len(opened(await bosssim.ledger())) == 1 and NUMBER not in pool(bosssim)
    sims = kiosk.emu("crt571-sims", "state")
    assert sims["position"] == "bin" and sims["captured"] == 1  # kept for the counter, not left at the gate
    assert not [s for s in txn["steps"] if s["kind"] == "boss_release" and s["resolved_by"] == "recovery"]


async def test_the_boss_unreachable_at_recovery_holds_an_unconfirmed_opening_for_review(kiosk, bosssim, monkeypatch):
    kiosk.place(**CARD)
    import transactions.flow as flow

    real = flow.boundary

    def hook(lbl: str) -> None:
        real(lbl)
        if lbl == "new_number:boss_open_number:intent":
            raise PowerCut(lbl)
    monkeypatch.setattr(flow, "boundary", hook)
    with pytest.raises(PowerCut):
        await run_flow(kiosk.services, "new_number", buyer(kiosk))
    monkeypatch.setattr(flow, "boundary", real)
    await kiosk.journal.close()
    await kiosk.journal.open()
    await bosssim.fault(op="op_status", mode="refuse", code="timeout", times=5)
    (rec,) = await recover(kiosk.services)
    txn = await kiosk.txn(rec.txn)
    assert rec.final == "review" and txn["ledger"]["held_for_review"] == 1000
    assert pool(bosssim)[NUMBER] == rec.txn  # not released while the BOSS may have opened it
    assert kiosk.emu("crt571-sims", "state")["captured"] == 1


@pytest.mark.parametrize("label", ["new_number:reserved:state", "new_number:boss_reserve:intent",
                                   "new_number:amount:state"])
async def test_a_number_reserved_for_a_customer_who_is_gone_goes_back_to_the_pool(kiosk, bosssim, monkeypatch,
                                                                                 label):
    kiosk.place(**CARD)
    txn, rec = await cut_and_recover(kiosk, monkeypatch, label, buyer(kiosk))
    assert txn["state"] == "cancelled", rec
    assert pool(bosssim)[NUMBER] is None
    assert kiosk.emu("crt571-sims", "state")["dispensed"] == 0
    assert txn["ledger"]["cash_in"] == 0


async def test_after_every_cut_the_data_directory_holds_no_plaintext(kiosk, bosssim, monkeypatch):
    kiosk.place(**CARD)
    await cut_and_recover(kiosk, monkeypatch, "new_number:write_sim:outcome", buyer(kiosk))
    assert scan_files(kiosk.state_dir, GOOD, PHOTO) == {}
    counts = await kiosk.journal.read(records.counters)
    assert counts["sim_reject"] == {"sims": 1}
