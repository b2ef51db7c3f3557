"""The event buffer of headers 229 (coins) and 159 (bills), and what their codes mean.

Pure logic, no I/O: given each poll's 11 bytes, say which result pairs are new (oldest
first), whether events were lost and whether the device reset (notes §1.7). The code tables
are Table 2 (coin acceptor errors) and Table 7 (bill validator events).
"""
from __future__ import annotations

from dataclasses import dataclass, field

EVENTS_KEPT = 5  # §1.7: five result pairs, result 1 newest


@dataclass(frozen=True)
class PollResult:
    """What one 229/159 reply says that the previous one did not."""

    new: list[tuple[int, int]] = field(default_factory=list)  # (A, B), oldest first
    lost: int = 0  # events that fell off the end of the buffer unseen (§1.7: diff > 5)
    reset: bool = False  # counter back at 0: power loss or reset, credits may be gone
    first: bool = False  # the first poll: the counter is stored, nothing is processed


def events_between(last: int, counter: int) -> int:
    """§1.7: new events on the 1..255 ring (0 only after reset); e.g. 255 -> 1 is one event."""
    if counter == last:
        return 0
    if last == 0:
        return counter
    if counter >= last:
        return counter - last
    return counter + 255 - last


class EventCounter:
    """Tracks the event counter of one device across polls."""

    def __init__(self) -> None:
        self.last: int | None = None

    def update(self, reply: bytes) -> PollResult:
        """``reply`` is the 11 data bytes of a 229/159 reply. Raises ValueError if it is not."""
        if len(reply) != 1 + 2 * EVENTS_KEPT:
            raise ValueError(f"event buffer must be 11 bytes, got {len(reply)}")
        counter = reply[0]
        pairs = [(reply[1 + 2 * i], reply[2 + 2 * i]) for i in range(EVENTS_KEPT)]  # newest first
        last, self.last = self.last, counter
        if last is None:
            return PollResult(first=True)
        if counter == 0 and last != 0:
            return PollResult(reset=True)
        # §1.7: only a counter of 0 says the device reset; 255 wraps to 1. A falling counter with
        # (0, 0) slots behind it is a wrap, not a reset: (0, 0) is a real event (bill validator
        # "master inhibit active", coin acceptor "null event"). A reset we polled too late to see
        # at 0 is found by the acceptor's master-inhibit read-back, not guessed here.
        diff = events_between(last, counter)
        seen = min(diff, EVENTS_KEPT)
        return PollResult(new=list(reversed(pairs[:seen])), lost=diff - seen)


# -- Table 2: coin acceptor error codes (result B when A = 0) ------------------------------
# code: (name, rejected?) ; "Possible" counts as not a clean rejection (a technician looks).
COIN_ERRORS: dict[int, tuple[str, str]] = {
    0: ("null_event", "no"),
    1: ("reject_coin", "yes"),
    2: ("inhibited_coin", "yes"),
    3: ("multiple_window", "yes"),
    4: ("wake_up_timeout", "possible"),
    5: ("validation_timeout", "possible"),
    6: ("credit_sensor_timeout", "possible"),
    7: ("sorter_opto_timeout", "no"),
    8: ("second_close_coin", "yes"),
    9: ("accept_gate_not_ready", "yes"),
    10: ("credit_sensor_not_ready", "yes"),
    11: ("sorter_not_ready", "yes"),
    12: ("reject_coin_not_cleared", "yes"),
    13: ("validation_sensor_not_ready", "yes"),
    14: ("credit_sensor_blocked", "yes"),
    15: ("sorter_opto_blocked", "yes"),
    16: ("credit_sequence_error", "no"),
    17: ("coin_going_backwards", "no"),
    18: ("coin_too_fast_credit_sensor", "no"),
    19: ("coin_too_slow_credit_sensor", "no"),
    20: ("coin_on_string", "no"),
    21: ("dce_opto_timeout", "possible"),
    22: ("dce_opto_not_seen", "yes"),
    23: ("credit_sensor_reached_too_early", "no"),
    24: ("reject_coin_repeated_trip", "yes"),
    25: ("reject_slug", "yes"),
    26: ("reject_sensor_blocked", "no"),
    27: ("games_overload", "no"),
    28: ("max_coin_meter_pulses_exceeded", "no"),
    29: ("accept_gate_open_not_closed", "no"),
    30: ("accept_gate_closed_not_open", "yes"),
    31: ("manifold_opto_timeout", "no"),
    32: ("manifold_opto_blocked", "yes"),
    33: ("manifold_not_ready", "yes"),
    34: ("security_status_changed", "possible"),
    35: ("motor_exception", "possible"),
    36: ("swallowed_coin", "no"),
    37: ("coin_too_fast_validation_sensor", "yes"),
    38: ("coin_too_slow_validation_sensor", "yes"),
    39: ("coin_incorrectly_sorted", "no"),
    40: ("external_light_attack", "no"),
    253: ("data_block_request", "no"),
    254: ("coin_return_mechanism_activated", "no"),
    255: ("unspecified_alarm", "no"),
}


def coin_error(code: int) -> tuple[str, bool]:
    """(name, rejected) for a Table 2 code; unknown codes are named by number, not rejected."""
    if code in COIN_ERRORS:
        name, rejected = COIN_ERRORS[code]
        return name, rejected == "yes"
    if 128 <= code <= 159:
        return f"inhibited_coin_{code - 127}", True
    if 160 <= code <= 191:
        return f"credit_cancelled_{code}", False
    return f"coin_error_{code}", False


# -- Table 7: bill validator event codes (result B when A = 0) -----------------------------
BILL_EVENTS: dict[int, tuple[str, str]] = {
    0: ("master_inhibit_active", "status"),
    1: ("bill_returned_from_escrow", "status"),
    2: ("invalid_bill_validation", "reject"),
    3: ("invalid_bill_transport", "reject"),
    4: ("inhibited_bill_serial", "status"),
    5: ("inhibited_bill_dip", "status"),
    6: ("bill_jammed_unsafe", "fatal"),
    7: ("bill_jammed_in_stacker", "fatal"),
    8: ("bill_pulled_backwards", "fraud"),
    9: ("bill_tamper", "fraud"),
    10: ("stacker_ok", "status"),
    11: ("stacker_removed", "status"),
    12: ("stacker_inserted", "status"),
    13: ("stacker_faulty", "fatal"),
    14: ("stacker_full", "status"),
    15: ("stacker_jammed", "fatal"),
    16: ("bill_jammed_safe", "fatal"),
    17: ("opto_fraud", "fraud"),
    18: ("string_fraud", "fraud"),
    19: ("anti_string_faulty", "fatal"),
    20: ("barcode_detected", "status"),
    21: ("unknown_bill_stacked", "status"),
    22: ("note_jam_cleared", "status"),
}


def bill_event(code: int) -> tuple[str, str]:
    """(name, type) for a Table 7 code; type is status/reject/fatal/fraud/unknown."""
    return BILL_EVENTS.get(code, (f"bill_event_{code}", "unknown"))
