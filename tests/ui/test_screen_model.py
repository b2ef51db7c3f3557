"""The screen model's hooks for the web UI: every change is announced, a touch restarts the walk-away wait."""
import asyncio

import pytest

from controller.screen import AnswerRefused, ScreenCustomer
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


async def test_a_note_question_falls_back_to_its_default_in_its_own_time_whatever_the_touches():
    """收下这张纸币?: its time is its own (a validator will not hold the note for ever): a touch
    does not extend it, no answer is the default, and an answer after that is refused."""
    customer = ScreenCustomer(idle_timeout_s=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ask = asyncio.create_task(customer.decide("accept_note", ["accept", "return"], "return", 0.5, amount="20.00"))
    await asyncio.sleep(0)
    q = customer.snapshot()["question"]
    assert (q["default"], q["words"]["zh"], q["words"]["en"]) == ("return", "收下这张纸币?20.00 元",
                                                                  "Accept this note? 20.00 yuan")
    customer.touch()
    assert customer.deadline <= started + 0.6
    assert await asyncio.wait_for(ask, 10) == "return"
    assert loop.time() >= started + 0.5
    with pytest.raises(AnswerRefused):
        customer.answer("accept", q["n"])


async def test_a_note_question_answered_or_cancelled():
    customer = ScreenCustomer(idle_timeout_s=60)
    ask = asyncio.create_task(customer.decide("accept_note", ["accept", "return"], "return", 30, amount="5.00"))
    await asyncio.sleep(0)
    customer.answer("accept", customer.question["n"])
    assert await ask == "accept"
    ask = asyncio.create_task(customer.decide("accept_note", ["accept", "return"], "return", 30, amount="5.00"))
    await asyncio.sleep(0)
    customer.cancel()  # the customer leaves: the note goes back, the flow sees the cancel afterwards
    assert await asyncio.wait_for(ask, 5) == "return"


async def test_plan_names_reach_the_screen_in_each_language():
    customer = ScreenCustomer(idle_timeout_s=60)
    names = {"4G-58": {"zh": "4G畅享58元套餐", "en": "4G Plus 58"}, "4G-88": {"zh": "4G畅享88元套餐", "en": "4G Max 88"}}
    ask = asyncio.create_task(customer.choose("choose_plan", ["4G-88"], current=names["4G-58"], labels=names))
    await asyncio.sleep(0)
    q = customer.snapshot()["question"]
    assert q["labels"] == {"4G-88": names["4G-88"]} and "labels" not in q["fmt"]
    assert q["words"] == {"zh": "您当前的套餐是 4G畅享58元套餐,请您选择新套餐。",
                          "en": "Your plan is 4G Plus 58. Please choose the new plan."}
    customer.show("plan_changed", plan=names["4G-88"], fee="88.00")
    assert customer.shown[-1]["words"]["en"] == "Plan changed: 4G Max 88 (88.00 yuan a month) from next month."
    customer.cancel()
    await asyncio.gather(ask, return_exceptions=True)
