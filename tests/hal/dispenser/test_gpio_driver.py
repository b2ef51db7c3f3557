"""The GPIO dispenser with gpiozero's MockFactory; pins are driven from threads, as real edges arrive."""
import asyncio
import threading
import time

import pytest

from hal.device import DeviceContext, Health
from hal.dispenser import give_card
from hal.dispenser.gpio import GpioDispenser
from hal.peripherals import DispenseFailed

MOTOR, EXIT, EMPTY, CAPTURE = 17, 27, 22, 23


class Mechanism(threading.Thread):
    """The card path of a real unit: when the motor runs, a card reaches the exit sensor."""

    def __init__(self, factory, travel_s=0.02):
        super().__init__(daemon=True)
        self.factory, self.travel_s = factory, travel_s
        self.stop = threading.Event()

    def run(self):
        motor, exit_ = self.factory.pin(MOTOR), self.factory.pin(EXIT)
        while not self.stop.is_set():
            if motor.state:
                self.stop.wait(self.travel_s)
                exit_.drive_low()  # the card blocks the (active-low) exit sensor
                return
            self.stop.wait(0.002)


def in_thread(fn):
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


async def make(**options):
    events = []
    ctx = DeviceContext(report=events.append)
    opts = dict(motor_pin=MOTOR, exit_pin=EXIT, pin_factory="mock", dispense_timeout_s=0.5, taken_clear_s=0.1)
    opts.update(options)
    driver = GpioDispenser("cards", GpioDispenser.Options(**opts), ctx)
    await driver.start()
    return driver, ctx.shared["gpio-mock"], events


async def test_motor_runs_until_the_exit_sensor_sees_the_card_then_the_customer_takes_it():
    driver, factory, events = await make()
    try:
        mech = Mechanism(factory)
        mech.start()
        await driver.dispense_to_gate()
        assert factory.pin(MOTOR).state is False  # motor stopped once the card arrived
        assert (await driver.status()).card_at_gate
        in_thread(factory.pin(EXIT).drive_high)  # the customer pulls the card
        assert await driver.wait_taken(2.0)
        assert driver.health == Health.OK and events == []
    finally:
        await driver.stop()


async def test_no_card_at_the_exit_sensor_in_time_is_a_jam_with_the_motor_off():
    driver, factory, events = await make(dispense_timeout_s=0.1)
    try:
        with pytest.raises(DispenseFailed) as failed:
            await driver.dispense_to_gate()
        assert failed.value.code == "jam" and [e.code for e in events] == ["jam"]
        assert factory.pin(MOTOR).state is False and (await driver.status()).jammed
        await driver.reset()
        assert not (await driver.status()).jammed
    finally:
        await driver.stop()


async def test_an_empty_stacker_sensor_refuses_without_running_the_motor():
    driver, factory, events = await make(empty_pin=EMPTY)
    try:
        in_thread(factory.pin(EMPTY).drive_low).join()
        with pytest.raises(DispenseFailed) as failed:
            await driver.dispense_to_gate()
        assert failed.value.code == "empty"
        assert all(not s.state for s in factory.pin(MOTOR).states)  # never switched on
    finally:
        await driver.stop()


async def test_a_finger_flicking_the_sensor_is_not_a_taken_card():
    driver, factory, _ = await make(taken_clear_s=0.5)
    try:
        Mechanism(factory).start()
        await driver.dispense_to_gate()
        exit_ = factory.pin(EXIT)

        def flicker():
            exit_.drive_high()
            exit_.drive_low()

        in_thread(flicker).join()
        assert not await driver.wait_taken(0.3)
    finally:
        await driver.stop()


async def test_an_untaken_card_is_captured_by_the_capture_relay():
    driver, factory, events = await make(capture_pin=CAPTURE, capture_time_s=0.05)
    try:
        Mechanism(factory).start()
        exit_, relay = factory.pin(EXIT), factory.pin(CAPTURE)

        def bin_mechanism():  # the capture relay pulls the card off the exit sensor
            deadline = time.monotonic() + 5
            while not relay.state and time.monotonic() < deadline:
                time.sleep(0.002)
            exit_.drive_high()

        in_thread(bin_mechanism)
        assert await give_card(driver, timeout=0.1) == "captured"
        assert relay.state is False
        assert [e.kind for e in events] == ["card_captured"]
    finally:
        await driver.stop()


async def test_without_a_capture_relay_capture_is_a_named_fault():
    driver, _, _ = await make()
    try:
        with pytest.raises(DispenseFailed) as failed:
            await driver.capture()
        assert failed.value.code == "unsupported"
        with pytest.raises(DispenseFailed):
            await driver.move_to_read_position()
    finally:
        await driver.stop()


async def test_simulate_shares_one_mock_factory_between_devices():
    ctx = DeviceContext(simulate=True)
    a = GpioDispenser("a", GpioDispenser.Options(motor_pin=5, exit_pin=6), ctx)
    b = GpioDispenser("b", GpioDispenser.Options(motor_pin=12, exit_pin=13), ctx)
    await a.start()
    await b.start()
    try:
        factory = ctx.shared["gpio-mock"]
        assert a.motor.pin_factory is factory is b.motor.pin_factory
    finally:
        await a.stop()
        await b.stop()
