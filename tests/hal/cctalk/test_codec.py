"""The ccTalk codec against every worked example in the notes (§1.2, §1.3), and fuzzed."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.protocols.cctalk import (
    ChecksumError,
    CcTalkCodec,
    CcTalkError,
    EchoMismatch,
    Reply,
    Request,
    Resync,
    crc16_xmodem,
    decode_frame,
    encode_frame,
)

# §1.3, simple checksum: (dest, header, data, TX bytes, RX bytes, reply data)
SIMPLE_EXAMPLES = [
    (2, 254, b"", [2, 0, 1, 254, 255], [1, 0, 2, 0, 253], b""),
    (2, 242, b"", [2, 0, 1, 242, 11], [1, 3, 2, 0, 78, 97, 188, 143], bytes([78, 97, 188])),
    (2, 231, b"\xff\xff", [2, 2, 1, 231, 255, 255, 22], [1, 0, 2, 0, 253], b""),
    (2, 245, b"", [2, 0, 1, 245, 8], [1, 13, 2, 0, *b"Coin Acceptor", 22], b"Coin Acceptor"),
    (2, 4, b"", [2, 0, 1, 4, 249], [1, 3, 2, 0, 1, 4, 2, 243], bytes([1, 4, 2])),
    (2, 184, b"\x01", [2, 1, 1, 184, 1, 67], [1, 6, 2, 0, *b"GB200A", 155], b"GB200A"),
    (2, 229, b"", [2, 0, 1, 229, 24], [1, 11, 2, 0] + [0] * 11 + [242], bytes(11)),
    (40, 159, b"", [40, 0, 1, 159, 56], [1, 11, 40, 0] + [0] * 11 + [204], bytes(11)),
    (40, 154, b"\x01", [40, 1, 1, 154, 1, 59], [1, 0, 40, 0, 215], b""),
    (40, 228, b"\x01", [40, 1, 1, 228, 1, 241], [1, 0, 40, 0, 215], b""),
    (2, 251, b"\x03", [2, 1, 1, 251, 3, 254], [1, 0, 2, 0, 253], b""),  # §1.6 address change
]

# §1.3, CRC-16: (dest, header, TX, RX)
CRC_EXAMPLES = [
    (40, 1, [40, 0, 70, 1, 63], [1, 0, 48, 0, 55]),
    (40, 254, [40, 0, 182, 254, 33], [1, 0, 48, 0, 55]),
]

# §1.2: the spec's CRC verification vectors
CRC_VECTORS = [
    ("49 D5 F2", 0xA6B3),
    ("2F BD 9D", 0x90B2),
    ("D9 53 D1", 0x7BB5),
    ("70 B8 D9 64 04 15", 0xFB00),
    ("72 61 B9 4E D0 78", 0x93E3),
    ("63 FA D1 9F E6 19", 0x5BB3),
]


@pytest.mark.parametrize("hexbytes,crc", CRC_VECTORS)
def test_crc16_matches_the_spec_verification_vectors(hexbytes, crc):
    assert crc16_xmodem(bytes.fromhex(hexbytes)) == crc


@pytest.mark.parametrize("dest,header,data,tx,rx,reply_data", SIMPLE_EXAMPLES)
def test_simple_checksum_worked_examples(dest, header, data, tx, rx, reply_data):
    codec = CcTalkCodec(echo=False)
    assert codec.encode(Request(dest=dest, header=header, data=data)) == bytes(tx)
    codec.feed(bytes(rx), now=0.0)
    assert list(codec.replies()) == [Reply(dest=1, src=dest, header=0, data=reply_data)]
    assert list(codec.errors()) == []


def test_serial_number_example_reads_12345678():
    _, _, _, data = decode_frame(bytes([1, 3, 2, 0, 78, 97, 188, 143]), "simple")
    assert int.from_bytes(data, "little") == 12_345_678


@pytest.mark.parametrize("dest,header,tx,rx", CRC_EXAMPLES)
def test_crc16_worked_examples(dest, header, tx, rx):
    codec = CcTalkCodec(echo=False, checksum="crc16")
    assert codec.encode(Request(dest=dest, header=header)) == bytes(tx)
    codec.feed(bytes(rx), now=0.0)
    (reply,) = list(codec.replies())
    assert reply.is_ack and reply.src is None  # with CRC there is no source address


def test_echo_is_skipped_byte_for_byte_then_the_reply_is_read():
    codec = CcTalkCodec(echo=True)
    wire = codec.encode(Request(dest=2, header=229))
    reply = bytes([1, 11, 2, 0] + [0] * 11 + [242])
    stream = wire + reply
    for i, byte in enumerate(stream):  # one byte at a time, 1 ms apart
        codec.feed(bytes([byte]), now=i * 0.001)
    assert [r.data for r in codec.replies()] == [bytes(11)]
    assert codec.idle


def test_an_echo_that_differs_from_what_we_sent_is_a_comms_failure():
    codec = CcTalkCodec(echo=True)
    codec.encode(Request(dest=2, header=254))
    codec.feed(bytes([2, 0, 9, 254, 255]) + bytes([1, 0, 2, 0, 253]), now=0.0)
    (problem,) = list(codec.errors())
    assert isinstance(problem, EchoMismatch)
    assert list(codec.replies()) == []  # nothing after a mismatch is trusted until the line is quiet
    codec.feed(bytes([1, 0, 2, 0, 253]), now=0.2)  # after a 50 ms silence: in step again
    assert [r.is_ack for r in codec.replies()] == [True]


def test_without_echo_our_own_frame_coming_back_is_counted_through_and_dropped():
    codec = CcTalkCodec(echo=False)  # an echoing adapter configured as silent still works
    wire = codec.encode(Request(dest=2, header=254))
    codec.feed(wire + bytes([1, 0, 2, 0, 253]), now=0.0)
    assert [r.is_ack for r in codec.replies()] == [True]
    assert list(codec.errors()) == []


def test_a_50ms_gap_drops_the_partial_frame_and_resyncs():
    codec = CcTalkCodec(echo=False)
    codec.feed(bytes([1, 3, 2, 0, 78]), now=0.0)  # a reply cut short
    codec.feed(bytes([1, 0, 2, 0, 253]), now=0.049)  # within 50 ms: still the same frame...
    assert list(codec.replies()) == []  # 8 bytes taken as one garbled frame
    assert [type(p) for p in codec.errors()] == [ChecksumError]
    codec.feed(bytes([1, 3, 2]), now=1.0)
    codec.feed(bytes([1, 0, 2, 0, 253]), now=1.051)  # ...but after 50 ms of silence, a new one
    assert [r.is_ack for r in codec.replies()] == [True]
    assert list(codec.errors())[-1] == Resync(bytes([1, 3, 2]))


def test_a_wrong_checksum_is_reported_not_delivered():
    codec = CcTalkCodec(echo=False)
    codec.feed(bytes([1, 0, 2, 0, 252]), now=0.0)
    assert list(codec.replies()) == []
    assert list(codec.errors()) == [ChecksumError(bytes([1, 0, 2, 0, 252]))]


def test_crc_frame_with_a_flipped_bit_is_a_checksum_error():
    codec = CcTalkCodec(echo=False, checksum="crc16")
    codec.feed(bytes([1, 0, 48, 0, 54]), now=0.0)
    assert list(codec.replies()) == [] and len(list(codec.errors())) == 1


def test_frames_for_other_addresses_are_ignored():
    codec = CcTalkCodec(echo=False)
    codec.feed(bytes([2, 0, 1, 254, 255, 1, 0, 2, 0, 253]), now=0.0)
    assert [r.src for r in codec.replies()] == [2]


def test_requests_that_cannot_be_framed_raise_the_codecs_own_error():
    codec = CcTalkCodec()
    with pytest.raises(CcTalkError):
        codec.encode(Request(dest=256, header=1))
    with pytest.raises(CcTalkError):
        codec.encode(Request(dest=2, header=1, data=bytes(256)))
    with pytest.raises(CcTalkError):
        CcTalkCodec(checksum="md5")


frames = st.builds(
    lambda dest, header, data: (dest, header, data),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
)


@given(frame=frames, checksum=st.sampled_from(["simple", "crc16"]))
def test_encode_decode_round_trip(frame, checksum):
    dest, header, data = frame
    wire = encode_frame(dest, 1, header, data, checksum)
    assert len(wire) == len(data) + 5
    decoded = decode_frame(wire, checksum)
    assert decoded is not None and decoded[0] == dest and decoded[2:] == (header, data)


@settings(max_examples=300)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=30),
    gaps=st.lists(st.floats(0, 0.2), max_size=30),
    echo=st.booleans(),
    checksum=st.sampled_from(["simple", "crc16"]),
)
def test_arbitrary_bytes_never_raise(chunks, gaps, echo, checksum):
    codec = CcTalkCodec(echo=echo, checksum=checksum)
    codec.encode(Request(dest=2, header=229))
    now = 0.0
    for chunk, gap in zip(chunks, gaps + [0.0] * len(chunks)):
        now += gap
        codec.feed(chunk, now)
    for reply in codec.replies():
        assert reply.dest == 1 and 0 <= len(reply.data) <= 255
    list(codec.errors())


@settings(max_examples=200)
@given(
    frame=frames,
    cuts=st.lists(st.integers(0, 260), max_size=6),
    noise=st.binary(max_size=20),
)
def test_a_reply_after_noise_and_a_quiet_gap_is_always_found(frame, cuts, noise):
    """§1.5: whatever garbage came before, 50 ms of silence puts the receiver back in step."""
    _, header, data = frame
    reply = encode_frame(1, 7, header, data, "simple")
    codec = CcTalkCodec(echo=False)
    codec.feed(noise, now=0.0)
    now = 1.0
    pieces, start = [], 0
    for cut in sorted(c % (len(reply) + 1) for c in cuts) + [len(reply)]:
        pieces.append(reply[start:cut])
        start = cut
    for piece in pieces:  # any chunking, bytes 1 ms apart
        codec.feed(piece, now)
        now += 0.001
    assert list(codec.replies())[-1] == Reply(1, 7, header, data)
