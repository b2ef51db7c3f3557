"""Door switch edge -> controller's inhibit hook, against a bare thread -> loop hand-off.

    python bench/panel_door_latency.py [--runs 500]

The edge is driven on a gpiozero MockFactory pin from a worker thread (as real edges arrive on
gpiozero's thread); the latency is the hook's time minus the time just before the drive. The
baseline is the same thread -> call_soon_threadsafe -> loop callback path with no gpiozero and
no panel. Requirement: door open -> every acceptor inhibited within 100 ms. Prints numbers only.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

from hal.device import DeviceContext
from hal.panel import GpioPanel, GpioPanelOptions

DOOR = 5


def p99_ms(samples: list[float]) -> float:
    ms = sorted(s * 1e3 for s in samples)
    return ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples)
    p99 = p99_ms(samples)
    return f"{name:<28} median {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms   max {ms[-1]:7.3f} ms"


async def baseline(runs: int) -> list[float]:
    loop = asyncio.get_running_loop()
    out: list[float] = []
    for _ in range(runs):
        done = asyncio.Event()
        t0 = [0.0]

        def fire() -> None:
            t0[0] = time.perf_counter()
            loop.call_soon_threadsafe(lambda: (out.append(time.perf_counter() - t0[0]), done.set()))

        threading.Thread(target=fire).start()
        await done.wait()
    return out


async def door(runs: int) -> list[float]:
    ctx = DeviceContext(simulate=True)
    panel = GpioPanel("panel", GpioPanelOptions(pin_factory="mock", door_pin=DOOR, settle_ms=1), ctx)
    await panel.start()
    pin = ctx.shared["gpio-mock"].pin(DOOR)
    out: list[float] = []
    hit = asyncio.Event()
    t0 = [0.0]
    panel.on_door_open(lambda event: (out.append(time.perf_counter() - t0[0]), hit.set()))
    closed = panel.events()
    try:
        for _ in range(runs):
            pin.drive_low()  # shut the door and let it settle
            async for event in closed:
                if event.kind == "door_closed":
                    break
            hit.clear()

            def open_door() -> None:
                t0[0] = time.perf_counter()
                pin.drive_high()

            threading.Thread(target=open_door).start()
            await hit.wait()
    finally:
        closed.close()
        await panel.stop()
    return out


async def main(runs: int) -> None:
    base = await baseline(runs)
    measured = await door(runs)
    print(summary("thread -> loop (baseline)", base))
    print(summary("door pin -> inhibit hook", measured))
    print(f"ratio (median door / median baseline): {statistics.median(measured) / statistics.median(base):.2f}")
    print(f"margin to the 100 ms requirement (p99): {100 / p99_ms(measured):.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    asyncio.run(main(parser.parse_args().runs))
