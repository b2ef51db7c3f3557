"""AT line codec: final result codes, the CMGS prompt, URCs and echo (V.250, 27.005, 27.007)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.protocols.at import AtCodec, Final, Noise, Prompt, Response, Urc, csq_to_dbm, parse_fields


def feed_bytewise(codec, data):
    for i in range(len(data)):
        codec.feed(data[i : i + 1])
    return codec.events()


def test_information_lines_belong_to_the_command_and_ok_ends_it():
    c = AtCodec()
    assert c.command("AT+CSQ") == b"AT+CSQ\r"
    events = feed_bytewise(c, b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events == [Response("+CSQ: 20,99"), Final("OK")]
    assert c.pending is None


def test_echo_of_the_command_in_flight_is_dropped():
    c = AtCodec()
    c.command("AT")
    c.feed(b"AT\r\r\nOK\r\n")
    assert c.events() == [Final("OK")]


def test_cms_and_cme_errors_carry_their_numeric_code():
    c = AtCodec()
    c.command("AT+CMGS=19")
    c.feed(b"\r\n+CMS ERROR: 331\r\n")
    [final] = c.events()
    assert (final.kind, final.code, final.ok) == ("CMS", 331, False)
    c.command("AT+CPIN?")
    c.feed(b"\r\n+CME ERROR: SIM not inserted\r\n")
    [final] = c.events()
    assert (final.kind, final.code, final.text) == ("CME", None, "SIM not inserted")


def test_the_cmgs_prompt_has_no_line_end_and_is_still_seen():
    c = AtCodec()
    c.command("AT+CMGS=18")
    assert feed_bytewise(c, b"\r\n> ") == [Prompt()]
    assert c.pdu_body("0001ab") == b"0001AB\x1a"
    c.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n")
    assert c.events() == [Response("+CMGS: 7"), Final("OK")]


def test_urcs_are_told_apart_from_the_answer_in_flight():
    c = AtCodec()
    c.command("AT+CSQ")
    c.feed(b'\r\n+CMTI: "SM",3\r\n+CREG: 1\r\n+CSQ: 5,99\r\nOK\r\n')
    assert c.events() == [Urc('+CMTI: "SM",3'), Urc("+CREG: 1"), Response("+CSQ: 5,99"), Final("OK")]
    c.feed(b"\r\nRING\r\n")  # nothing in flight: everything is unsolicited
    assert c.events() == [Urc("RING")]


def test_a_runaway_line_is_noise_not_a_crash():
    c = AtCodec()
    c.feed(b"\xff" * 2000)
    [noise] = c.events()
    assert isinstance(noise, Noise)


def test_csq_maps_to_dbm_per_27007_8_5():
    assert [csq_to_dbm(x) for x in (0, 1, 20, 31, 99)] == [-113, -111, -73, -51, None]
    assert parse_fields('+CREG: 0,"1"') == ["0", "1"]


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_in_any_chunking_never_raise(chunks):
    c = AtCodec()
    c.command("AT+CMGS=5")
    for chunk in chunks:
        c.feed(chunk)
        for ev in c.events():
            assert isinstance(ev, (Response, Final, Prompt, Urc, Noise))
