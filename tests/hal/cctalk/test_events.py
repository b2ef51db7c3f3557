"""The 229/159 event buffer as §1.7 describes it, and the code tables (Table 2, Table 7)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.protocols.cctalk_events import EventCounter, bill_event, coin_error, events_between


@pytest.mark.parametrize(
    "last,counter,new",
    [(23, 23, 0), (102, 104, 2), (255, 1, 1), (253, 3, 5), (48, 54, 6)],  # the spec's examples
)
def test_new_events_on_the_1_to_255_ring(last, counter, new):
    assert events_between(last, counter) == new


def buffer(counter, *pairs):
    flat = [x for pair in pairs for x in pair]
    return bytes([counter, *flat, *[0] * (10 - len(flat))])


def test_first_poll_only_stores_the_counter():
    tracker = EventCounter()
    assert tracker.update(buffer(7, (1, 0))).first
    assert tracker.update(buffer(7, (1, 0))).new == []


def test_new_results_are_processed_oldest_first():
    tracker = EventCounter()
    tracker.update(buffer(102, (9, 9)))
    result = tracker.update(buffer(104, (3, 0), (2, 0), (9, 9)))  # result 1 is the newest
    assert result.new == [(2, 0), (3, 0)] and result.lost == 0


def test_a_counter_jump_of_more_than_5_means_lost_events():
    tracker = EventCounter()
    tracker.update(buffer(48))
    result = tracker.update(buffer(54, (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)))
    assert result.lost == 1 and result.new == [(5, 0), (4, 0), (3, 0), (2, 0), (1, 0)]


def test_a_counter_back_at_0_means_the_device_reset():
    tracker = EventCounter()
    tracker.update(buffer(67))
    assert tracker.update(buffer(0)).reset
    result = tracker.update(buffer(1, (4, 0)))  # after the reset, counting starts again at 1
    assert result.new == [(4, 0)] and not result.reset


def test_a_wrap_with_null_events_behind_it_is_five_events_not_a_reset():
    """§1.7: 253 -> 3 is five events (254, 255, 1, 2, 3); (0, 0) is a real event, not a blank slot."""
    tracker = EventCounter()
    tracker.update(bytes([253] + [0] * 10))
    reply = bytes([3, 2, 0, 2, 0, 1, 1, 0, 0, 0, 0])  # counter 3, results 1..5 newest first
    result = tracker.update(reply)
    assert not result.reset and result.lost == 0
    assert result.new == [(0, 0), (0, 0), (1, 1), (2, 0), (2, 0)]


def test_a_wrap_past_255_is_not_mistaken_for_a_reset():
    tracker = EventCounter()
    tracker.update(buffer(254, (1, 0), (2, 0), (3, 0), (1, 0), (2, 0)))
    result = tracker.update(buffer(2, (3, 0), (2, 0), (1, 0), (2, 0), (3, 0)))
    assert not result.reset and result.new == [(1, 0), (2, 0), (3, 0)]  # 255, 1, 2


def test_counter_0_before_any_event_is_not_a_reset():
    tracker = EventCounter()
    tracker.update(buffer(0))
    assert not tracker.update(buffer(0)).reset


@given(st.integers(1, 255), st.integers(0, 5))
def test_up_to_five_new_events_are_never_lost(last, n):
    counter = last
    for _ in range(n):
        counter = 1 if counter == 255 else counter + 1
    tracker = EventCounter()
    tracker.update(buffer(last))
    result = tracker.update(buffer(counter, *[(i + 1, 0) for i in range(5)]))
    assert len(result.new) == n and result.lost == 0


def test_every_coin_code_is_named():
    assert coin_error(1) == ("reject_coin", True)
    assert coin_error(20) == ("coin_on_string", False)
    assert coin_error(130) == ("inhibited_coin_3", True)
    assert all(coin_error(code)[0] for code in range(256))


def test_every_bill_code_is_named_and_typed():
    assert bill_event(6) == ("bill_jammed_unsafe", "fatal")
    assert bill_event(8)[1] == "fraud"
    assert bill_event(99) == ("bill_event_99", "unknown")
