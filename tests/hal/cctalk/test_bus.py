"""Several ccTalk devices on one multi-drop port (§1.1), checksum forms and echo (§1.2, §1.1)."""
import asyncio
import time

import pytest

from hal.cash import CashFault, CoinAccepted, Escrow, PayoutResult, Stacked
from hal.cctalk.bill import CcTalkBillValidator
from hal.cctalk.coin import CcTalkCoinAcceptor
from hal.cctalk.hopper import CcTalkHopper

from .conftest import condition, until


@pytest.mark.parametrize("emu", [{"checksums": {"bill": "crc16"}}], indirect=True)
async def test_coin_bill_and_hopper_share_one_port_and_one_bus(emu):
    coin = emu.driver(CcTalkCoinAcceptor)
    bill = emu.driver(CcTalkBillValidator, checksum="crc16")  # §1.11: per-device checksum
    hopper = emu.driver(CcTalkHopper)
    for device in (coin, bill, hopper):
        await device.start()
    try:
        assert coin.bus is bill.bus is hopper.bus  # one bus per port, one lock
        await coin.set_inhibit(False)
        await bill.set_inhibit(False)

        async def cash_in():
            await emu("insert_coin", value=100)
            await until(coin, CoinAccepted)
            await emu("insert_bill", value=1000)
            await until(bill, Escrow)
            await bill.stack()
            return (await until(bill, Stacked))[0].fen

        stacked, paid = await asyncio.gather(cash_in(), hopper.dispense(3))
        assert (stacked, paid) == (1000, PayoutResult(3, 0, 300))
        state = await emu("state")
        assert (state["coins_accepted_fen"], state["bills_stacked_fen"], state["hopper_paid"]) == (100, 1000, 3)
        assert state["bad_checksum"] == 0 and coin.bus.stats["checksum_errors"] == 0  # no collisions
    finally:
        for device in (coin, bill, hopper):
            await device.stop()
    assert coin.bus is None and not emu.ctx.shared["cctalk:" + emu.path].link  # last one out closes the port


async def test_an_adapter_that_starts_echoing_is_still_understood_without_echo_skipping(emu):
    coin = emu.driver(CcTalkCoinAcceptor, echo=False)
    await coin.start()
    try:
        await coin.set_inhibit(False)
        await emu("set_echo", on=True)  # our own frame comes back: not addressed to the host, dropped
        await emu("insert_coin", value=10)
        assert (await until(coin, CoinAccepted))[0].fen == 10
    finally:
        await coin.stop()


async def test_echo_expected_but_absent_ends_in_device_silent(emu):
    coin = emu.driver(CcTalkCoinAcceptor, echo=True, silent_after=1)
    await coin.start()
    try:
        event, _ = await until(coin, CashFault)
        assert event.code == "device_silent" and "echo" in event.detail
        await emu("set_echo", on=True)
        await coin.set_inhibit(False)
        # Unpolled while it was unreachable, the acceptor inhibited itself (§1.5, 1 s watchdog) and
        # stays so until the next 229: a coin dropped before that is (rightly) rejected.
        enabled_at = time.monotonic()
        await condition(lambda: coin.last_poll_at > enabled_at)
        await emu("insert_coin", value=50)
        assert (await until(coin, CoinAccepted))[0].fen == 50
    finally:
        await coin.stop()


@pytest.mark.parametrize(
    "bad", [{"poll_interval_ms": 250}, {"checksum": "md5"}, {"address": 1}, {"retries": 0}]
)
def test_options_outside_the_spec_are_refused_at_config_time(bad):
    with pytest.raises(ValueError):
        CcTalkCoinAcceptor.Options(port="/dev/ttyUSB0", **bad)


def test_every_config_key_has_a_type_kioskd_understands():
    import dataclasses

    allowed = {"str", "int", "float", "bool", "dict[str, int]", "list[int]", "list[str]"}
    for cls in (CcTalkCoinAcceptor, CcTalkBillValidator, CcTalkHopper):
        for f in dataclasses.fields(cls.Options):
            assert str(f.type) in allowed, (cls.__name__, f.name, f.type)


async def test_under_simulate_the_sim_port_works_with_the_default_echo_setting(tmp_path):
    """kioskd --simulate rewrites port to sim:cctalk; the kiosk.toml may still say echo = true."""
    from hal.device import DeviceContext
    from hal.emulators.simports import SimPorts

    sim = SimPorts(tmp_path)
    ctx = DeviceContext(simulate=True, sim_ports=sim)
    coin = CcTalkCoinAcceptor("coin", CcTalkCoinAcceptor.Options(port="sim:cctalk", poll_interval_ms=20), ctx)
    hopper = CcTalkHopper("hopper", CcTalkHopper.Options(port="sim:cctalk", poll_interval_ms=20), ctx)
    await coin.start()
    await hopper.start()
    try:
        await sim.started()
        await coin.set_inhibit(False)
        assert sim.runner("cctalk").control("insert_coin", {"value": 100}) == "accepted"
        assert (await until(coin, CoinAccepted))[0].fen == 100
        assert await hopper.dispense(1) == PayoutResult(1, 0, 100)
    finally:
        await coin.stop()
        await hopper.stop()
        await sim.stop()


@pytest.mark.parametrize("security", ["rot13", "plain", "no_such_vendor:cipher", "hal.cctalk.hopper:nothing"])
def test_hopper_options_refuse_an_unknown_security_form(security):
    with pytest.raises(ValueError, match="security"):
        CcTalkHopper.Options(port="/dev/ttyUSB0", security=security)
    assert CcTalkHopper.Options(port="/dev/ttyUSB0").security == "serial"  # the documented default
