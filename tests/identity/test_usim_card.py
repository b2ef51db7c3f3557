"""The virtual USIM answers APDUs as the SIM notes §8.3 (TS 102 221) say, without pcscd."""
from hal.emulators.usim import USIM_AID, UsimCard


def tx(card, hexapdu: str) -> tuple[bytes, str]:
    out = card.apdu(bytes.fromhex(hexapdu))
    return out[:-2], out[-2:].hex().upper()


def test_select_with_fcp_answers_61xx_and_get_response_returns_the_template():
    card = UsimCard()
    data, sw = tx(card, "00A40004022FE2")
    assert data == b"" and sw.startswith("61")
    size = int(sw[2:], 16)
    _, sw2 = tx(card, "00C0000001")  # wrong Le: told the right one
    assert sw2 == f"6C{size:02X}"
    fcp, sw3 = tx(card, f"00C00000{size:02X}")
    assert sw3 == "9000" and fcp[0] == 0x62 and bytes.fromhex("80 02 00 0A") in fcp  # tag 80: 10 bytes
    assert bytes.fromhex("83 02 2F E2") in fcp


def test_without_t0_the_fcp_comes_at_once():
    card = UsimCard(t0=False)
    fcp, sw = tx(card, "00A4040407A0000000871002")
    assert sw == "9000" and bytes([0x84, len(USIM_AID)]) + USIM_AID in fcp


def test_iccid_reads_as_swapped_bcd_with_a_luhn_digit():
    card = UsimCard(serial=7)
    tx(card, "00A4000C022FE2")
    data, sw = tx(card, "00B000000A")
    assert sw == "9000" and len(card.iccid) == 19 and data[0] == 0x98  # "89" nibble-swapped


def test_verify_adm_counter_wrong_codes_and_blocking():
    card = UsimCard(adm="3132333435363738", adm_tries=3)
    assert tx(card, "0020000A")[1] == "63C3"  # no data: the counter, no try spent
    assert tx(card, "0020000A08" + "00" * 8)[1] == "63C2"
    assert tx(card, "0020000A08" + "3132333435363738")[1] == "9000"  # right code resets the counter
    assert tx(card, "0020000A")[1] == "9000"
    for left in ("63C2", "63C1", "6983"):
        assert tx(card, "0020000A08" + "00" * 8)[1] == left
    assert tx(card, "0020000A08" + "3132333435363738")[1] == "6983"  # blocked for good


def test_updates_need_adm_and_power_on_forgets_it():
    card = UsimCard(adm="3132333435363738")
    tx(card, "00A4080C047F206F07")
    assert tx(card, "00D6000009" + "08" * 9)[1] == "6982"
    tx(card, "0020000A08" + "3132333435363738")
    assert tx(card, "00D6000009" + "08" * 9)[1] == "9000"
    card.power_on()
    tx(card, "00A4080C047F206F07")
    assert tx(card, "00D6000009" + "09" * 9)[1] == "6982"


def test_records_paths_and_errors():
    card = UsimCard()
    tx(card, "00A4000C022F00")
    rec, sw = tx(card, "00B2010420")
    assert sw == "9000" and rec[:2] == bytes([0x61, 0x18]) and USIM_AID in rec
    assert tx(card, "00B0000001")[1] == "6981"  # a record file is not read as binary
    assert tx(card, "00A4080C027F99")[1] == "6A82"
    assert tx(card, "A0A40000023F00")[1] == "6E00"  # CLA A0 is not ours
    assert tx(card, "00EE000000")[1] == "6D00"
    tx(card, "00A4080C047FF0FF02")
    assert tx(card, "00B0000020")[1] == "6982"  # keys only under ADM
