"""The emulators speak the notes' worked frames (card-dispensers.md §4.2, §4.3) byte for byte."""
import pytest

from hal.emulators import create_model
from hal.emulators.model import ControlError


def test_crt571_answers_a_worked_status_command_with_ack_and_a_positive_reply():
    model = create_model("crt571")
    wire = model.receive(bytes.fromhex("F2 00 00 03 43 31 30 03 B0"), 0.0)
    assert wire[:1] == b"\x06"
    reply = wire[1:]
    assert reply[0] == 0xF2 and reply[4:7] == b"P10"
    assert reply[7:10] == b"02" + b"0"  # no card in channel, enough cards, bin not full
    check = 0
    for b in reply[:-1]:
        check ^= b
    assert check == reply[-1]


def test_crt571_moves_nothing_before_the_initialise_command():
    model = create_model("crt571")
    move = bytes.fromhex("F2 00 00 03 43 32 30 03 B3")
    assert model.receive(move, 0.0)[5:10] == b"N20B0"
    assert model.receive(bytes.fromhex("F2 00 00 03 43 30 33 03 B2"), 0.0)[5:8] == b"P03"
    assert model.receive(move, 0.0)[5:11] == b"P201" + b"2" + b"0"  # card at the gate
    assert model.snapshot()["position"] == "gate" and model.snapshot()["stock"] == 49


def test_crt571_naks_a_frame_with_a_bad_bcc_and_ignores_other_units():
    model = create_model("crt571")
    assert model.receive(bytes.fromhex("F2 00 00 03 43 31 30 03 B1"), 0.0) == b"\x15"
    assert model.receive(bytes.fromhex("F2 01 00 03 43 31 30 03 B1"), 0.0) == b""


def test_k720_answers_ap_only_after_enq_with_the_worked_idle_reply():
    model = create_model("k720")
    assert model.receive(bytes.fromhex("02 30 30 00 02 41 50 03 12"), 0.0) == b"\x0600"
    assert model.receive(b"\x0500", 0.01) == bytes.fromhex("02 30 30 00 06 53 46 30 30 30 30 03 12")


def test_k720_reports_an_empty_box_with_the_worked_reply():
    model = create_model("k720")
    model.control("set_stock", {"count": 0})
    model.receive(bytes.fromhex("02 30 30 00 02 41 50 03 12"), 0.0)
    assert model.receive(b"\x0500", 0.01) == bytes.fromhex("02 30 30 00 06 53 46 30 30 30 38 03 1A")


def test_k720_dispense_is_a_list_2_command_executed_on_enq_without_a_response():
    model = create_model("k720")
    assert model.receive(bytes.fromhex("02 30 30 00 02 44 43 03 04"), 0.0) == b"\x0600"
    assert model.snapshot()["position"] == "stack"  # ACK alone does not move a card
    assert model.receive(b"\x0500", 0.01) == b""
    assert model.snapshot()["position"] == "gate" and model.digits() == "0004"
    model.control("take_card", {})
    assert model.snapshot()["taken"] == 1 and model.digits() == "0000"


def test_k720_eot_cancels_the_acked_command():
    model = create_model("k720")
    model.receive(bytes.fromhex("02 30 30 00 02 44 43 03 04"), 0.0)
    model.receive(b"\x0400", 0.01)
    model.receive(b"\x0500", 0.02)
    assert model.snapshot()["dispensed"] == 0


def test_k720_a_command_split_by_a_long_gap_is_void():
    model = create_model("k720")
    wire = bytes.fromhex("02 30 30 00 02 41 50 03 12")
    assert model.receive(wire[:4], 0.0) == b""
    assert model.receive(wire[4:], 0.2) == b""


def test_k720_nak_on_bad_bcc_and_near_empty_and_jam_flags():
    model = create_model("k720", stock=3, near_empty=5)
    assert model.receive(bytes.fromhex("02 30 30 00 02 41 50 03 13"), 0.0) == b"\x1500"
    assert model.digits() == "0010"
    model.control("jam", {})
    assert model.digits() == "0030"


def test_take_card_needs_a_card_at_the_gate():
    with pytest.raises(ControlError, match="no card at the gate"):
        create_model("k720").control("take_card", {})


def test_a_card_jams_on_its_way_to_the_gate_and_a_technician_pulls_it_out():
    """jam at=gate (the fault matrix's SIM stuck between the contacts and the gate): the move to
    the read position still works, the next move to the gate jams; pull_card empties the channel."""
    model = create_model("crt571")
    model.control("jam", {"at": "gate"})
    assert model.cards.move_to("read") is None
    assert model.cards.move_to("gate") == "jam" and model.snapshot()["position"] == "read"
    assert model.snapshot()["jammed"] and model.cards.capture() == "jam"
    model.control("clear_jam", {})
    model.control("pull_card", {})
    state = model.snapshot()
    assert state["position"] == "bin" and state["dispensed"] == state["taken"] + state["captured"] == 1
    with pytest.raises(ControlError):
        model.control("pull_card", {})
