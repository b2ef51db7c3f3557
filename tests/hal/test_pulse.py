"""Pulse acceptors on gpiozero's MockFactory, with trains driven from a thread as real edges are.

Widths follow pulse-acceptors.md §2.2 (CH-926 fast 20 / medium 50 / slow 100 ms); the
failure cases follow §2.3 (glitches, stuck line, back-to-back coins, no merging).
"""
import asyncio
import time

import pytest
from gpiozero.pins.mock import MockFactory

from hal.cash import CashFault, CoinAccepted, Rejected
from hal.device import DeviceContext, DeviceError, Health
from hal.pulse import PulseAcceptor, PulseOptions
from hal.registry import load_driver

COIN_PIN = 5
RELAY_PIN = 17


def drive_train(pin, widths_ms, gap_ms, active_low=True):
    """One pulse per width, ``gap_ms`` apart, like an acceptor's open-collector output."""
    press, release = (pin.drive_low, pin.drive_high) if active_low else (pin.drive_high, pin.drive_low)
    for i, width in enumerate(widths_ms):
        if i:
            time.sleep(gap_ms / 1000)
        press()
        time.sleep(width / 1000)
        release()


async def until(condition, timeout=3.0):
    """Wait for a state the device reaches by itself (a train closed, a glitch counted)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def next_event(events, timeout=3.0):
    async with asyncio.timeout(timeout):
        return await anext(events)


@pytest.fixture
def reports():
    return []


@pytest.fixture
def ctx(reports):
    return DeviceContext(report=reports.append, simulate=True)


@pytest.fixture
def board(ctx):
    return ctx.share("gpio-mock", MockFactory)


async def started(ctx, **options):
    options = {"pin": COIN_PIN, "train_gap_ms": 250.0, **options}
    device = PulseAcceptor("coin", PulseOptions(**options), ctx)
    await device.start()
    return device


@pytest.mark.parametrize("width_ms,gap_ms", [(20, 20), (50, 60), (100, 100)])
async def test_ch926_speeds_credit_a_three_pulse_coin(ctx, board, width_ms, gap_ms):
    device = await started(ctx, pulses_to_fen={"1": 10, "3": 100})
    events = device.events()
    await asyncio.to_thread(drive_train, board.pin(COIN_PIN), [width_ms] * 3, gap_ms)
    assert await next_event(events) == CoinAccepted("coin", 100)
    await device.stop()


async def test_fast_pulses_are_counted_one_by_one_not_merged(ctx, board):
    device = await started(ctx, pulses_to_fen={"5": 50, "1": 10})
    events = device.events()
    await asyncio.to_thread(drive_train, board.pin(COIN_PIN), [20] * 5, 20)
    assert await next_event(events) == CoinAccepted("coin", 50)
    await device.stop()


async def test_a_count_not_in_the_table_is_rejected(ctx, board):
    device = await started(ctx, pulses_to_fen={"1": 10, "2": 50})
    events = device.events()
    await asyncio.to_thread(drive_train, board.pin(COIN_PIN), [50] * 4, 50)
    assert await next_event(events) == Rejected("coin", "pulse_count")
    await device.stop()


async def test_back_to_back_coins_are_two_trains(ctx, board):
    device = await started(ctx, pulses_to_fen={"1": 10, "2": 50})
    events = device.events()
    pin = board.pin(COIN_PIN)
    await asyncio.to_thread(drive_train, pin, [50], 50)
    assert await next_event(events) == CoinAccepted("coin", 10)  # the first train closed on its own
    await asyncio.to_thread(drive_train, pin, [50, 50], 50)
    assert await next_event(events) == CoinAccepted("coin", 50)
    await device.stop()


async def test_a_lone_glitch_is_noise_and_credits_nothing(ctx, board):
    device = await started(ctx, pulses_to_fen={"1": 10, "2": 50})
    events = device.events()
    pin = board.pin(COIN_PIN)
    await asyncio.to_thread(drive_train, pin, [2], 0)
    await until(lambda: device.glitches == 1 and device.between_trains)
    await asyncio.to_thread(drive_train, pin, [50, 50], 50)
    assert await next_event(events) == CoinAccepted("coin", 50)  # the glitch made no event of its own
    assert device.glitches == 1
    await device.stop()


async def test_a_short_pulse_inside_a_train_is_a_width_fault(ctx, board):
    device = await started(ctx, pulses_to_fen={"2": 50, "3": 100})
    events = device.events()
    await asyncio.to_thread(drive_train, board.pin(COIN_PIN), [50, 3, 50], 50)
    event = await next_event(events)
    assert isinstance(event, CashFault) and event.code == "pulse_width"
    assert "too short [" in event.detail
    await device.stop()


async def test_a_stuck_line_is_a_width_fault_and_clears_when_released(ctx, board, reports):
    device = await started(ctx, max_pulse_ms=150.0, pulses_to_fen={"1": 10, "2": 50})
    events = device.events()
    pin = board.pin(COIN_PIN)
    await asyncio.to_thread(pin.drive_low)
    event = await next_event(events)
    assert isinstance(event, CashFault) and event.code == "pulse_width"
    assert device.health is Health.FAULT
    assert any(r.kind == "fault" and r.code == "pulse_width" for r in reports)

    await asyncio.to_thread(pin.drive_high)
    await until(lambda: device.between_trains)  # the stuck train closed, crediting nothing
    await asyncio.to_thread(drive_train, pin, [50], 50)
    assert await next_event(events) == CoinAccepted("coin", 10)  # the stuck train itself credited nothing
    assert device.health is Health.OK
    await device.stop()


async def test_active_high_line(ctx, board):
    pin = board.pin(COIN_PIN)
    pin.pull = "up"
    pin.drive_low()  # NC setting: the acceptor holds the line low against the pull-up
    device = await started(ctx, active_low=False, pulses_to_fen={"2": 50})
    events = device.events()
    await asyncio.to_thread(drive_train, pin, [50, 50], 50, False)
    assert await next_event(events) == CoinAccepted("coin", 50)
    await device.stop()


@pytest.mark.parametrize("active_high,inhibited_level", [(True, 1), (False, 0)])
async def test_inhibit_drives_the_relay_pin(ctx, board, active_high, inhibited_level):
    device = await started(ctx, inhibit_pin=RELAY_PIN, inhibit_active_high=active_high)
    relay = board.pin(RELAY_PIN)
    assert relay.state == inhibited_level  # inhibited from start
    await device.set_inhibit(False)
    assert relay.state == 1 - inhibited_level
    await device.accept_only([5000])  # no such coin: nothing to accept, so inhibit
    assert relay.state == inhibited_level
    await device.accept_only([100, 5000])
    assert relay.state == 1 - inhibited_level
    await device.stop()
    assert relay.state == inhibited_level  # stop leaves it in the safe state


async def test_a_line_stuck_active_at_start_is_found(ctx, board):
    pin = board.pin(COIN_PIN)
    pin.pull = "up"
    pin.drive_low()  # held low against the pull-up before kioskd starts
    device = await started(ctx, max_pulse_ms=100.0)
    event = await next_event(device.events())
    assert isinstance(event, CashFault) and event.code == "pulse_width"
    await device.stop()


async def test_credit_while_inhibited_is_still_credited_and_reported(ctx, board, reports):
    device = await started(ctx, pulses_to_fen={"1": 10})
    events = device.events()
    assert device.inhibited
    await asyncio.to_thread(drive_train, board.pin(COIN_PIN), [50], 50)
    assert await next_event(events) == CoinAccepted("coin", 10)
    assert [r.kind for r in reports] == ["credit_while_inhibited"]
    await device.stop()


async def test_no_escrow_and_bad_options(ctx):
    device = await started(ctx)
    with pytest.raises(DeviceError, match="no escrow"):
        await device.stack()
    await device.stop()
    with pytest.raises(DeviceError, match="pulses_to_fen"):
        PulseAcceptor("coin", PulseOptions(pin=COIN_PIN, pulses_to_fen={"0": 10}), ctx)
    assert load_driver("pulse-acceptor") is PulseAcceptor
    assert load_driver("pulse-acceptor").Options is PulseOptions
