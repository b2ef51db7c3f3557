"""The screen model's hooks for the web UI: every change is announced, a touch restarts the walk-away wait."""
import asyncio

import pytest

from controller.screen import ScreenCustomer
from transactions.customer import CustomerIdle


async def test_every_change_of_the_screen_is_announced():
    customer = ScreenCustomer(idle_timeout_s=30)
    changes = []
    customer.on_change = lambda: changes.append(customer.snapshot())
    ask = asyncio.create_task(customer.choose("choose_card", ["3000"]))
    await asyncio.sleep(0)
    assert changes[-1]["question"]["prompt"] == "choose_card"
    customer.answer("3000", changes[-1]["question"]["n"])
    assert await ask == "3000"
    assert changes[-1]["question"] is None, "the question leaving the screen is a change too"
    customer.show("paid_so_far", paid="1.00", due="30.00")
    assert changes[-1]["shown"][-1]["key"] == "paid_so_far"
    customer.cancel()
    assert changes[-1]["cancelled"] is True


async def test_a_touch_restarts_the_walk_away_wait():
    customer = ScreenCustomer(idle_timeout_s=2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ask = asyncio.create_task(customer.enter("enter_phone", "phone"))
    await asyncio.sleep(1.0)
    customer.touch()
    assert customer.deadline >= started + 2.9
    await asyncio.sleep(1.5)  # past the first deadline (started + 2 s)
    assert not ask.done(), "the touch kept the customer"
    with pytest.raises(CustomerIdle):
        await asyncio.wait_for(ask, 10)
    assert loop.time() >= customer.deadline
