"""The ID reader emulator answers the spec's frames (reader notes §3.3), checked byte by byte."""
import pytest

from hal.emulators.idcard import IdCardReaderModel
from hal.emulators.model import ControlError

from .cards import GOOD


def ask(model, wire: str) -> bytes:
    return model.receive(bytes.fromhex(wire), 0.0)


FIND = "AA AA AA 96 69 00 03 20 01 22"
SELECT = "AA AA AA 96 69 00 03 20 02 21"
READ = "AA AA AA 96 69 00 03 30 01 32"


def test_no_card_answers_80_and_select_81():
    m = IdCardReaderModel()
    assert ask(m, FIND) == bytes.fromhex("AA AA AA 96 69 00 04 00 00 80 84")
    assert ask(m, SELECT) == bytes.fromhex("AA AA AA 96 69 00 04 00 00 81 85")
    assert ask(m, READ) == bytes.fromhex("AA AA AA 96 69 00 04 00 00 41 45")


def test_a_placed_card_is_found_selected_and_read_as_1295_bytes():
    m = IdCardReaderModel()
    m.control("place_card", dict(GOOD, photo="ab" * 1024))
    assert ask(m, FIND) == bytes.fromhex("AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97")
    assert ask(m, SELECT) == bytes.fromhex("AA AA AA 96 69 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C")
    frame = ask(m, READ)
    assert len(frame) == 1295 and frame[:14] == bytes.fromhex("AA AA AA 96 69 05 08 00 00 90 01 00 04 00")
    assert frame[14:44].decode("utf-16-le").rstrip() == "张三丰"
    assert frame[136:172].decode("utf-16-le") == "11010519491231002X"
    assert frame[270:1294] == b"\xab" * 1024


def test_status_answers_90_and_a_bad_checksum_10_an_unknown_command_21():
    m = IdCardReaderModel()
    assert ask(m, "AA AA AA 96 69 00 03 11 FF ED") == bytes.fromhex("AA AA AA 96 69 00 04 00 00 90 94")
    assert ask(m, "AA AA AA 96 69 00 03 11 FF EE")[9] == 0x10
    assert ask(m, "AA AA AA 96 69 00 03 77 77 03")[9] == 0x21


def test_a_reader_that_does_not_report_a_read_card_again():
    m = IdCardReaderModel(reread=False)
    m.control("place_card", GOOD)
    ask(m, FIND), ask(m, SELECT), ask(m, READ)
    assert ask(m, FIND)[9] == 0x80
    m.control("place_card", GOOD)  # presented again
    assert ask(m, FIND)[9] == 0x9F


def test_a_card_pulled_away_mid_read_answers_41_and_is_gone():
    m = IdCardReaderModel()
    m.control("place_card", GOOD)
    m.control("fail_next_read", {})
    ask(m, FIND), ask(m, SELECT)
    assert ask(m, READ)[9] == 0x41
    assert ask(m, FIND)[9] == 0x80


def test_place_card_refuses_what_does_not_fit():
    m = IdCardReaderModel()
    with pytest.raises(ControlError):
        m.control("place_card", dict(GOOD, name="一" * 16))
    with pytest.raises(ControlError):
        m.control("place_card", dict(GOOD, photo="00" * 10))


def test_the_snapshot_never_holds_the_cards_text():
    m = IdCardReaderModel()
    m.control("place_card", GOOD)
    assert "张三丰" not in repr(m.snapshot()) and GOOD["id_number"] not in repr(m.snapshot())
