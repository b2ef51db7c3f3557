"""The ccTalk coin acceptor driver against the bus emulator over a pty."""
import asyncio

import pytest

from hal.cash import CashFault, CoinAccepted, Rejected
from hal.cctalk.coin import CcTalkCoinAcceptor, coin_value_fen
from hal.device import Health

from tests.rig import lines

from .conftest import condition, until


@pytest.mark.parametrize(
    "coin_id,fen",
    [("CN100A", 100), ("CN050A", 50), ("CN010A", 10), ("GB200A", 200), ("EU.50A", 0),
     ("XX1K0A", 1000), ("XX2K5A", 2500), ("......", 0), ("TK000A", 0), ("CNabcA", 0)],
)
def test_coin_values_from_the_184_id_string(coin_id, fen):
    assert coin_value_fen(coin_id) == fen


async def test_identifies_reads_the_coin_table_and_credits_an_enabled_coin(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        assert coin.identity["category"] == "Coin Acceptor"
        if lines.real("cctalk"):  # a real acceptor: its own serial and coin table, whatever they are
            assert coin.identity["serial"] and coin.values
            return
        assert coin.identity["serial"] == 12345678 and coin.values == {1: 10, 2: 50, 3: 100}
        state = await emu("state")
        assert state["coin"]["accepting"] is False  # starts in the safe state
        await coin.set_inhibit(False)
        assert await emu("insert_coin", value=100) == "accepted"
        event, _ = await until(coin, CoinAccepted)
        assert event.fen == 100 and coin.credited_fen == 100
    finally:
        await coin.stop()
    assert (await emu("state"))["coin"]["master_enabled"] is False  # stop() leaves it inhibited


async def test_an_inhibited_coin_is_rejected_with_its_name_and_no_credit(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await coin.accept_only([100])
        assert await emu("insert_coin", value=50) == "inhibited"
        event, _ = await until(coin, Rejected)
        assert event.reason == "inhibited_coin" and coin.credited_fen == 0
        await emu("reject_coin")
        assert (await until(coin, Rejected))[0].reason == "reject_coin"
    finally:
        await coin.stop()


async def test_coin_on_string_is_a_fault_not_a_credit(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        await emu("fraud", device="coin")
        event, _ = await until(coin, CashFault)
        assert event.code == "coin_on_string" and coin.credited_fen == 0
        assert emu.reported("coin_on_string")
    finally:
        await coin.stop()


async def test_a_counter_jump_of_more_than_5_means_lost_events_and_cash_in_is_suspended(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("drop_events", device="coin", count=6)
        event, _ = await until(coin, CashFault)
        assert event.code == "lost_events" and coin.health == Health.FAULT
        await condition(lambda: not coin._reapply)
        state = await emu("state")
        assert state["coin"]["accepting"] is False  # inhibited for review
        assert await emu("insert_coin", value=100) == "inhibited"
        await coin.resume_after_review()
        assert (await emu("state"))["coin"]["accepting"] is True
    finally:
        await coin.stop()


async def test_a_counter_back_at_0_is_reported_as_a_reset_and_inhibits_are_reapplied(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("insert_coin", value=10)
        await until(coin, CoinAccepted)
        await emu("power_cycle", device="coin")
        event, _ = await until(coin, CashFault)
        assert event.code == "device_reset"
        await condition(lambda: not coin._reapply)
        assert (await emu("state"))["coin"]["accepting"] is True  # enabled again by the driver
        assert await emu("insert_coin", value=50) == "accepted"
        assert (await until(coin, CoinAccepted))[0].fen == 50
    finally:
        await coin.stop()


async def test_a_silent_device_gives_device_silent_then_recovers(emu):
    coin = emu.driver(CcTalkCoinAcceptor, silent_after=2)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("mute")
        event, _ = await until(coin, CashFault)
        assert event.code == "device_silent" and coin.health == Health.FAULT
        await emu("insert_coin", value=100)  # buffered by the device while we cannot hear it
        await emu("unmute")
        event, _ = await until(coin, CoinAccepted)
        assert event.fen == 100 and coin.health == Health.OK
        assert emu.reported("device_back")
    finally:
        await coin.stop()


async def test_corrupt_replies_are_retried_without_phantom_credit(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("insert_coin", value=100)
        await emu("corrupt", count=2)
        event, seen = await until(coin, CoinAccepted)
        assert coin.credited_fen == 100 and [e for e in seen if isinstance(e, CoinAccepted)] == [event]
        assert coin.bus.stats["checksum_errors"] >= 1
    finally:
        await coin.stop()


@pytest.mark.parametrize("emu", [{"echo": True}], indirect=True)
async def test_works_through_an_echoing_adapter(emu):
    coin = emu.driver(CcTalkCoinAcceptor, echo=True)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("insert_coin", value=50)
        assert (await until(coin, CoinAccepted))[0].fen == 50
        assert coin.bus.stats["echo_errors"] == 0
    finally:
        await coin.stop()


async def test_every_table_2_code_becomes_a_named_event_and_never_a_credit(emu):
    from hal.protocols.cctalk_events import COIN_ERRORS

    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    codes = [c for c in COIN_ERRORS if c] + list(range(128, 160)) + [160, 200]
    try:
        for start in range(0, len(codes), 5):  # at most five between polls (§1.7)
            batch = codes[start : start + 5]
            for code in batch:
                await emu("fraud", device="coin", code=code)  # puts (0, code) in the buffer
            for code in batch:
                event, _ = await until(coin, (Rejected, CashFault))
                name, rejected = COIN_ERRORS.get(code, (None, None))
                if name is None:
                    assert (event.reason if isinstance(event, Rejected) else event.code).endswith(str(code - 127 if code < 160 else code))
                else:
                    assert isinstance(event, Rejected if rejected == "yes" else CashFault)
                    assert (event.reason if rejected == "yes" else event.code) == name
        assert coin.credited_fen == 0
    finally:
        await coin.stop()


async def test_self_test_names_the_device_and_its_coins(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    await coin.start()
    try:
        text = await coin.self_test()
        ident = coin.identity
        assert text.startswith(f"CcTalkCoinAcceptor: {ident['manufacturer']} {ident['product']} #{ident['serial']} ok; values ")
        if not lines.real("cctalk"):
            assert text == "CcTalkCoinAcceptor: KSK EMU-COIN #12345678 ok; values 1:10, 2:50, 3:100"
    finally:
        await coin.stop()
