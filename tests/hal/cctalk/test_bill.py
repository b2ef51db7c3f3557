"""The ccTalk bill validator driver against the bus emulator: escrow, routing, faults (§1.7, §1.8)."""
import pytest

from hal.cash import CashFault, Escrow, Rejected, Returned, Stacked
from hal.cctalk.bill import CcTalkBillValidator, bill_value_fen
from hal.device import DeviceError, Health

from .conftest import condition, until


@pytest.mark.parametrize(
    "bill_id,factor,decimals,fen",
    [("CN0100A", 100, 2, 10000), ("EU0005A", 100, 2, 500), ("CN0005A", 1, 0, 500),
     ("CN0005A", 1, 3, 0), ("CN5000A", 10, 3, 5000), (".......", 100, 2, 0)],
)
def test_bill_values_from_157_scaled_by_156(bill_id, factor, decimals, fen):
    assert bill_value_fen(bill_id, factor, decimals) == fen


@pytest.fixture
async def bill(emu):
    validator = emu.driver(CcTalkBillValidator)
    await validator.start()
    await validator.set_inhibit(False)
    yield validator
    await validator.stop()


async def test_reads_the_bill_table_and_enables(emu, bill):
    assert bill.identity["category"] == "Bill Validator"
    assert bill.values == {1: 100, 2: 500, 3: 1000, 4: 2000, 5: 5000, 6: 10000}
    state = (await emu("state"))["bill"]
    assert state["master_enabled"] and state["inhibit_mask"] == 0b111111 and state["escrow_mode"]


async def test_escrow_is_no_credit_and_stacking_credits_on_the_stacked_event(emu, bill):
    assert await emu("insert_bill", value=2000) == "escrow"
    event, _ = await until(bill, Escrow)
    assert event.fen == 2000 and bill.credited_fen == 0  # never credit on escrow
    await bill.stack()  # hdr 154 route 1
    event, _ = await until(bill, Stacked)
    assert event.fen == 2000 and bill.credited_fen == 2000
    assert (await emu("state"))["bills_stacked_fen"] == 2000


async def test_returning_from_escrow_gives_no_credit(emu, bill):
    await emu("insert_bill", value=5000)
    await until(bill, Escrow)
    await bill.return_bill()  # hdr 154 route 0
    event, _ = await until(bill, Returned)
    assert event.fen == 5000 and bill.credited_fen == 0


@pytest.mark.parametrize("emu", [{"escrow_timeout": 0.3}], indirect=True)
async def test_escrow_timeout_returns_the_bill_and_route_255_extends_it(emu, bill):
    await emu("insert_bill", value=100)
    await until(bill, Escrow)
    await bill.extend_escrow()
    event, _ = await until(bill, Returned, timeout=3)
    assert event.fen == 100 and bill.credited_fen == 0
    with pytest.raises(DeviceError):
        await bill.stack()  # nothing in escrow any more


async def test_an_unknown_bill_is_rejected(emu, bill):
    assert await emu("insert_bill", value=300) == "rejected"
    assert (await until(bill, Rejected))[0].reason == "invalid_bill_validation"


async def test_a_jam_with_a_bill_in_escrow_is_a_fault_without_credit(emu, bill):
    await emu("insert_bill", value=1000)
    await until(bill, Escrow)
    await emu("jam_bill")
    event, _ = await until(bill, CashFault)
    assert event.code == "bill_jammed_unsafe" and "1000 fen" in event.detail
    assert bill.health == Health.FAULT and bill.credited_fen == 0 and bill.escrow is None


async def test_pulling_a_bill_back_is_fraud_without_credit(emu, bill):
    await emu("insert_bill", value=10000)
    await until(bill, Escrow)
    await emu("fraud", device="bill")
    event, _ = await until(bill, CashFault)
    assert event.code == "bill_pulled_backwards" and bill.credited_fen == 0
    assert emu.reported("bill_pulled_backwards")


async def test_stacker_removed_is_a_fault_and_route_fails_until_it_is_back(emu, bill):
    await emu("insert_bill", value=500)
    await until(bill, Escrow)
    await emu("remove_stacker")
    event, _ = await until(bill, CashFault)
    assert event.code == "stacker_removed" and bill.health == Health.FAULT
    with pytest.raises(DeviceError, match="route_failed"):
        await bill.stack()
    assert (await until(bill, CashFault))[0].code == "route_failed"
    await emu("replace_stacker")
    await condition(lambda: bill.health == Health.OK)
    await bill.stack()
    assert (await until(bill, Stacked))[0].fen == 500


async def test_a_power_cycle_with_a_bill_in_escrow_is_reported_not_ignored(emu, bill):
    await emu("insert_bill", value=2000)
    await until(bill, Escrow)
    await emu("power_cycle", device="bill", bill_in_escrow=True)
    _, seen = await until(bill, Escrow)
    codes = [e.code for e in seen if isinstance(e, CashFault)]
    assert "device_reset" in codes and "escrow_interrupted" in codes and "bill_in_escrow_at_power_up" in codes
    assert bill.escrow == (4, 2000) and bill.credited_fen == 0
    await condition(lambda: not bill._reapply)
    await bill.return_bill()
    assert (await until(bill, Returned))[0].fen == 2000


async def test_a_power_cycle_that_stacked_the_escrowed_bill_unseen_is_reported(emu, bill):
    await emu("insert_bill", value=1000)
    await until(bill, Escrow)
    await emu("power_cycle", device="bill", bill_in_stacker=True)
    _, seen = await until(bill, CashFault)
    event, _ = await until(bill, CashFault)
    assert {seen[-1].code, event.code} == {"device_reset", "escrow_interrupted"}
    assert "1000 fen" in (seen[-1].detail + event.detail) and bill.credited_fen == 0  # for review


async def test_a_validator_found_holding_a_bill_at_start_is_reported(emu):
    first = emu.driver(CcTalkBillValidator)
    await first.start()
    await first.set_inhibit(False)
    await emu("insert_bill", value=100)
    await until(first, Escrow)
    first._poll_task.cancel()  # kioskd dies without tidying up
    await first._close_bus()
    second = emu.driver(CcTalkBillValidator)
    await second.start()
    try:
        event, seen = await until(second, Escrow)
        assert event.fen == 100 and seen[0].code == "bill_in_escrow_at_start"
    finally:
        await second.stop()


async def test_every_table_7_code_becomes_a_named_event_and_never_a_credit(emu, bill):
    """Codes the emulator cannot script are fed to the event handler the poll loop uses."""
    from hal.protocols.cctalk_events import BILL_EVENTS

    seen = []
    for code in list(BILL_EVENTS) + [99]:
        await bill._on_event(0, code)
        while not bill._queue.empty():
            seen.append(bill._queue.get_nowait())
    kinds = {type(e).__name__ for e in seen}
    assert kinds <= {"Rejected", "CashFault", "Returned"} and bill.credited_fen == 0
    faults = {e.code for e in seen if isinstance(e, CashFault)}
    assert {"bill_jammed_unsafe", "bill_jammed_in_stacker", "bill_tamper", "stacker_removed", "stacker_full",
            "string_fraud", "opto_fraud", "unknown_bill_stacked", "bill_event_99"} <= faults
    assert {e.reason for e in seen if isinstance(e, Rejected)} == {
        "invalid_bill_validation", "invalid_bill_transport", "inhibited_bill_serial", "inhibited_bill_dip"}
