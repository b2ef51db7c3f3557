"""GPIO panel on gpiozero's MockFactory: pins are driven from a thread, as real edges arrive."""
import asyncio

import pytest

from hal.device import DeviceContext, DeviceError
from hal.panel import GpioPanel, GpioPanelOptions

DOOR, TAMPER, SERVICE, CASHBOX = 5, 6, 13, 19
READY, BUSY, FAULT, RELAY = 20, 21, 26, 23


@pytest.fixture
async def panel():
    events = []
    ctx = DeviceContext(report=events.append)  # pin_factory "mock" as on a Pi: the cabinet as wired, not simulated
    options = GpioPanelOptions(
        pin_factory="mock", door_pin=DOOR, tamper_pin=TAMPER, service_button_pin=SERVICE, cashbox_pin=CASHBOX,
        ready_led_pin=READY, busy_led_pin=BUSY, fault_led_pin=FAULT, relays={"acceptor_power": RELAY}, settle_ms=20,
    )
    p = GpioPanel("panel", options, ctx)
    await p.start()
    p.pins = ctx.share("gpio-mock", lambda: None)  # the very MockFactory the panel uses
    p.reported = events
    try:
        yield p
    finally:
        await p.stop()


async def drive(panel, pin, level):
    """Drive a mock pin from a worker thread (gpiozero calls back in the driving thread)."""
    mock = panel.pins.pin(pin)
    await asyncio.to_thread(mock.drive_high if level else mock.drive_low)


async def next_event(stream, kind, timeout=1.0):
    async with asyncio.timeout(timeout):
        async for event in stream:
            if event.kind == kind:
                return event


async def close_everything(panel):
    stream = panel.events()
    for pin in (DOOR, TAMPER, CASHBOX):
        await drive(panel, pin, 0)  # switches to ground: closed = low
    waiting = {"door_closed", "tamper_closed", "cashbox_inserted"}
    async with asyncio.timeout(1):
        async for event in stream:
            waiting.discard(event.kind)
            if not waiting:
                return stream


async def test_at_start_an_open_door_is_reported_as_found(panel):
    # Pull-ups and nothing closed: door and tamper open, cash box absent.
    kinds = [(e.kind, e.code) for e in panel.reported]
    assert ("door_open", "initial") in kinds and ("cashbox_removed", "initial") in kinds
    assert panel.door_open


async def test_a_simulated_cabinet_boots_shut_and_reports_no_initial_alarm():
    """kioskd --simulate: no boot-time door_open/tamper_open/cashbox_removed reaches the hall."""
    events = []
    ctx = DeviceContext(report=events.append, simulate=True)
    p = GpioPanel("panel", GpioPanelOptions(door_pin=DOOR, tamper_pin=TAMPER, cashbox_pin=CASHBOX, settle_ms=20), ctx)
    await p.start()
    try:
        assert not p.door_open and p.closed == {"door": True, "tamper": True, "cashbox": True}
        assert events == []
        stream = p.events()
        p.pins = ctx.share("gpio-mock", lambda: None)
        await drive(p, DOOR, 1)  # the technician opens it: reported as ever
        assert (await next_event(stream, "door_open")).initial is False
    finally:
        await p.stop()


async def test_door_open_calls_the_inhibit_hook_on_the_loop_promptly(panel):
    await close_everything(panel)
    assert not panel.door_open
    called = asyncio.Event()
    seen = []
    loop = asyncio.get_running_loop()

    def inhibit_all_acceptors(event):
        assert asyncio.get_running_loop() is loop  # on the loop, not gpiozero's thread
        seen.append(event)
        called.set()

    panel.on_door_open(inhibit_all_acceptors)
    await drive(panel, DOOR, 1)
    async with asyncio.timeout(0.1):  # upper sanity bound only; the number is printed below
        await called.wait()
    [event] = seen
    print(f"door-open edge -> hook latency: {event.latency_s * 1e3:.3f} ms")
    assert event.kind == "door_open" and not event.initial and panel.door_open
    assert panel.reported[-1].kind == "door_open"


async def test_tamper_open_also_fires_the_door_hook(panel):
    stream = await close_everything(panel)
    seen = []
    panel.on_door_open(seen.append)
    await drive(panel, TAMPER, 1)
    await next_event(stream, "tamper_open")
    assert [e.kind for e in seen] == ["tamper_open"]


async def test_a_bouncing_door_closing_settles_into_one_door_closed(panel):
    stream = panel.events()
    for level in (0, 1, 0, 1, 0):  # contact bounce while the door shuts
        await drive(panel, DOOR, level)
    await next_event(stream, "door_closed")
    await drive(panel, TAMPER, 0)
    await next_event(stream, "tamper_closed")  # a later event: any extra door event would be before it
    kinds = [e.kind for e in panel.reported if not e.code]
    assert kinds.count("door_closed") == 1


async def test_service_button_presses_are_debounced(panel):
    stream = panel.events()
    got = []
    panel.on("service_button", got.append)
    await drive(panel, SERVICE, 0)
    await drive(panel, SERVICE, 1)
    await drive(panel, SERVICE, 0)  # bounce within settle_ms
    await next_event(stream, "service_button")
    await asyncio.sleep(0.03)  # past the 20 ms debounce window
    await drive(panel, SERVICE, 1)
    await drive(panel, SERVICE, 0)
    await next_event(stream, "service_button")
    assert len(got) == 2


async def test_cashbox_removed_and_inserted(panel):
    stream = await close_everything(panel)
    assert panel.cashbox_present is True
    await drive(panel, CASHBOX, 1)
    await next_event(stream, "cashbox_removed")
    assert panel.cashbox_present is False
    await drive(panel, CASHBOX, 0)
    await next_event(stream, "cashbox_inserted")


async def test_leds_show_status_patterns_and_safe_state_cuts_relays(panel):
    pins = panel.pins
    panel.show("ready")
    assert pins.pin(READY).state and not pins.pin(BUSY).state and not pins.pin(FAULT).state
    panel.show("fault")
    assert panel.led_patterns == {"ready": "off", "busy": "off", "fault": "fast"}
    panel.set_relay("acceptor_power", True)
    assert pins.pin(RELAY).state and panel.relay("acceptor_power")
    await panel.safe_state()
    assert not pins.pin(RELAY).state
    assert panel.led_patterns["fault"] == "steady" and pins.pin(FAULT).state
    with pytest.raises(DeviceError):
        panel.set_relay("coffee_machine", True)


async def test_fault_led_really_blinks_fast(panel):
    panel.set_led("fault", "fast")
    mock = panel.pins.pin(FAULT)
    async with asyncio.timeout(2):
        while len(mock.states) < 4:  # on, off, on ... recorded by MockPin with times
            await asyncio.sleep(0.02)


async def test_an_unknown_pin_factory_is_refused():
    p = GpioPanel("panel", GpioPanelOptions(pin_factory="rpigpio"), DeviceContext())
    with pytest.raises(DeviceError, match="pin_factory"):
        await p.start()
