"""Every codec and parser that takes bytes from outside, as a fuzz target: one input in, and the
only exceptions allowed out are the ones the parser declares (ValueError subclasses such as
PduError, CommandError, ConfigError, Malformed ...). Anything else is a crash: a bug.

The same targets serve the bounded property tests (tests/reliability/test_fuzz.py, in
``./dev test``) and the long runs (bench/fuzz.py: atheris when installed, else mutation at
volume). ``seeds`` are valid inputs a mutator starts from, built here from the specifications'
frame layouts (not from the emulators, so a misreading shared with them does not hide).

Stream codecs get the input in chunks at times taken from the input itself, so fuzzing also
covers the inter-byte gap handling.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hal.protocols import at, cctalk, cctalk_events, crt571, escpos, idcard, k720, sms_pdu, usim


@dataclass
class Target:
    name: str
    run: Callable[[bytes], Any]  # one input; raises only ``declared``
    declared: tuple[type[BaseException], ...] = ()
    seeds: list[bytes] = field(default_factory=list)

    def one(self, data: bytes) -> None:
        """Run one input; a declared error is an answer, anything else propagates (a crash)."""
        try:
            self.run(data)
        except self.declared:
            pass


def _chunks(data: bytes) -> list[tuple[bytes, float]]:
    """Split ``data`` into chunks with arrival times: the first byte says how (so a mutator moves
    the split and the gaps too). Gaps of 0-0.8 s straddle the codecs' 50 ms / 0.5 s timeouts."""
    if not data:
        return []
    shape, body = data[0], data[1:]
    size = 1 + (shape & 0x0F)
    now, out = 0.0, []
    for i in range(0, len(body), size):
        now += ((body[i] * (shape >> 4)) % 9) / 10
        out.append((body[i:i + size], now))
    return out


# -- ccTalk (host side): replies and framing problems, never an exception ----------------------

def _cctalk(checksum: str, echo: bool) -> Callable[[bytes], Any]:
    def run(data: bytes) -> None:
        codec = cctalk.CcTalkCodec(echo=echo, checksum=checksum)
        if echo:
            codec.encode(cctalk.Request(dest=2, header=254))
        for chunk, now in _chunks(data):
            codec.feed(chunk, now)
            list(codec.replies())
            list(codec.errors())
    return run


def _cctalk_events(data: bytes) -> None:
    counter = cctalk_events.EventCounter()
    for i in range(0, len(data), 11):
        result = counter.update(data[i:i + 11])  # ValueError on a short buffer: declared
        for code, _ in result.new:
            cctalk_events.coin_error(code)
            cctalk_events.bill_event(code)


# -- card dispensers, ID reader, modem: event lists, never an exception ------------------------

def _stream(make: Callable[[], Any]) -> Callable[[bytes], Any]:
    def run(data: bytes) -> None:
        codec = make()
        for chunk, now in _chunks(data):
            codec.feed(chunk, now)
            codec.events()
    return run


def _at(data: bytes) -> None:
    codec = at.AtCodec()
    codec.command("AT+CSQ")
    for chunk, _ in _chunks(data):
        codec.feed(chunk)
        for event in codec.events():
            line = getattr(event, "line", None)
            if isinstance(line, str):
                fields = at.parse_fields(line)
                if fields and fields[0].isdigit():
                    at.csq_to_dbm(int(fields[0]))
                    at.registered(int(fields[0]))


def _id_base_info(data: bytes) -> None:
    """The 30 01 / 30 10 reply's data: length fields, the text block, its fields and dates."""
    import datetime as dt

    info = idcard.split_base_info(data, with_fingerprint=len(data) % 2 == 1)  # IdCardError: declared
    card = idcard.parse_text(info.text)
    idcard.problems(card, dt.date(2026, 12, 4))
    idcard.mask_id_number(card.id_number)
    idcard.mask_name(card.name)


# -- printer status, SMS PDUs, SIM file contents -------------------------------------------------

def _escpos(data: bytes) -> None:
    replies = {}
    for n, i in zip((1, 2, 3, 4), range(0, 8, 2)):
        chunk = data[i:i + 2] if len(data) > 8 else data[i // 2:i // 2 + 1]
        try:
            replies[n] = escpos.parse_status_reply(chunk)
        except escpos.StatusReplyError:
            pass
    escpos.decode_status(replies)
    escpos.unrecoverable(replies)


def _sms(data: bytes) -> None:
    sms_pdu.reassemble([sms_pdu.decode_submit(data)])


def _usim(data: bytes) -> None:
    usim.unswap(data)
    for dec in (usim.dec_iccid, usim.dec_imsi):
        try:
            dec(data)
        except usim.UsimCodingError:
            pass
    text = data.decode("latin-1")
    for enc in (usim.swap_nibbles, usim.enc_imsi, usim.enc_spn, usim.adm_code):
        try:
            enc(text)
        except usim.UsimCodingError:
            pass


def _usim_card(data: bytes) -> None:
    """The virtual USIM's APDU interpreter (card side): any command gets a status word."""
    from hal.emulators.usim import UsimCard

    card = UsimCard(serial=1)
    while data:  # the first byte: how long the next command is
        n, cmd, data = data[0] % 24, data[1:1 + data[0] % 24], data[1 + data[0] % 24:]
        reply = card.apdu(cmd)
        assert len(reply) >= 2, (cmd.hex(), reply)


class _Card:
    """A card answering each APDU with the next slice of the input: (data, sw1, sw2)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def transmit(self, apdu: list[int]) -> tuple[list[int], int, int]:
        if len(self.data) < 3:
            from smartcard.Exceptions import CardConnectionException

            raise CardConnectionException("card removed")
        n = self.data[0] % 24
        out, self.data = self.data[1:1 + n], self.data[1 + n:]
        sw = (self.data + b"\x90\x00")[:2]
        self.data = self.data[2:]
        return list(out), sw[0], sw[1]


def _sim_writer(data: bytes) -> None:
    """The PC/SC writer reading a card's answers (ICCID, ADM counters) from a card that says anything."""
    from hal.simcard import SimWriteFailed
    from hal.simcard.writer import PcscSimWriter, _Sw

    writer = PcscSimWriter.__new__(PcscSimWriter)
    try:
        writer._read_iccid(_Card(data))
    except (_Sw, SimWriteFailed, usim.UsimCodingError):
        pass


# -- MQTT: the kiosk's command payloads, the hall's ingest --------------------------------------

_COMMANDS = ("enable_service", "disable_service", "inhibit_cash", "reprint", "sync_time", "request_telemetry",
             "set_config", "restart", "resolve_review", "resolve_refund", "nope")


def _mqtt_command(data: bytes) -> None:
    from controller import commands

    name = _COMMANDS[data[0] % len(_COMMANDS)] if data else "restart"
    commands.parse(name, data[1:])


def _hall_ingest(data: bytes) -> None:
    from hall import store

    leaf = ("txn", "event", "status", "telemetry")[data[0] % 4] if data else "txn"
    m = store.Inbound("H1", "K1", leaf, data[1:], 0.0)
    body = store.decode(m)
    text = store._text(m, body)
    if leaf == "txn":
        store._txn_row("H1", "K1", body, 0.0, text)
    elif leaf == "event":
        store._event_row("H1", "K1", body, 0.0, text)


# -- kioskd's local API: one request line in, one reply out ------------------------------------

def _local_api_handler() -> Callable[[str, dict], Any]:
    """The local API's dispatch with kioskd's command names and their argument handling, over a
    kiosk with nothing behind it (each command either answers or raises what _answer turns into
    an error reply)."""
    from controller.api import LocalApi
    from hal.emulators.model import ControlError

    api = LocalApi(Path("/nonexistent"))

    def refuse(args: dict) -> Any:
        raise ControlError("no customer is being served")
    for name in ("status", "devices", "menu", "screen"):
        api.command(name, lambda args: {})
    api.command("begin", lambda args: refuse(str(args["service"])))
    api.command("answer", lambda args: refuse((args["value"], args.get("n"))))
    api.command("cancel", lambda args: None)
    api.command("test", lambda args: refuse(args.get("device", "")))
    api.command("emu", lambda args: refuse((args.pop("name", ""), args.pop("emu_cmd", ""))))
    api.command("sim_gpio", lambda args: refuse(int(args["pin"])))
    return api._dispatch


_API = None


def _local_api(data: bytes) -> None:
    global _API
    if _API is None:
        _API = _local_api_handler()
    reply = json.loads(_sync_reply(_API, data))
    assert isinstance(reply.get("ok"), bool), reply


def _sync_reply(handler: Any, line: bytes) -> bytes:
    from hal.emulators.control import _reply

    coro = _reply(handler, line)
    try:  # no handler here awaits: the coroutine finishes on its first step
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the local API reply awaited")


# -- kiosk.toml -----------------------------------------------------------------------------------

_CONFIG_DIR = Path("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()) / f"kiosk-fuzz-{os.getpid()}"  # tmpfs: no disk per input


def _config(data: bytes) -> None:
    from controller.config import ConfigError, load

    _CONFIG_DIR.mkdir(exist_ok=True)
    path = _CONFIG_DIR / "kiosk.toml"
    path.write_bytes(data)
    try:
        load(path, simulate=bool(data[:1] and data[0] & 1))
    except ConfigError:
        pass


# -- seeds: valid inputs from the specifications' layouts -----------------------------------------

def _crt571_reply(text: bytes, address: int = 0) -> bytes:
    body = bytes([crt571.STX, address, len(text) >> 8, len(text) & 0xFF]) + text + bytes([crt571.ETX])
    return body + bytes([crt571.bcc(body)])


def _k720_reply(text: bytes, address: int = 0) -> bytes:
    body = bytes([k720.STX]) + k720.address_bytes(address) + len(text).to_bytes(2, "big") + text + bytes([k720.ETX])
    return body + bytes([k720.bcc(body)])


def _idcard_reply(sw3: int, data: bytes = b"") -> bytes:
    body = (len(data) + 4).to_bytes(2, "big") + bytes([0x00, 0x00, sw3]) + data
    return idcard.PREAMBLE + body + bytes([idcard.xor(body)])


def _id_text_seed() -> bytes:
    """Length fields (text 256, photo 4), a text block laid out as §3.4 says, a stand-in photo."""
    values = {"name": "张三", "gender": "1", "nation": "01", "birth": "19900101", "address": "北京市东城区",
              "id_number": "11010119900101123X", "authority": "北京市公安局", "valid_from": "20200101",
              "valid_to": "20400101"}
    text = bytearray(b" \x00" * (idcard.TEXT_LEN // 2))
    for name, offset, size in idcard.TEXT_FIELDS:
        raw = values[name].encode("utf-16-le")[:size]
        text[offset:offset + len(raw)] = raw
    return idcard.TEXT_LEN.to_bytes(2, "big") + (4).to_bytes(2, "big") + bytes(text) + b"WLT!"


def _command(name: str, args: dict) -> bytes:
    return bytes([_COMMANDS.index(name)]) + json.dumps(
        {"schema": 1, "id": "c-1", "deadline": 4102444800 - 1, "args": args}).encode()


SEED_CONFIG = b"""[kiosk]
id = "K1"
hall = "H1"
simulate = true

[mqtt]
host = "127.0.0.1"
port = 1883

[flows]
idle_timeout = 30.0
card_prices = { "3000" = 3000 }

[devices.coin]
driver = "cctalk-coin"
port = "sim:cctalk"
"""

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("cctalk", _cctalk("simple", echo=False),
           seeds=[b"\x00" + cctalk.encode_frame(1, 2, 0, bytes(range(11)), "simple"),
                  b"\x03" + cctalk.encode_frame(1, 2, 0, b"", "simple") * 2]),
    Target("cctalk-crc16-echo", _cctalk("crc16", echo=True),
           seeds=[b"\x00" + cctalk.encode_frame(2, 1, 254, b"", "crc16") + cctalk.encode_frame(1, 2, 0, b"\x01", "crc16")]),
    Target("cctalk-events", _cctalk_events, (ValueError,),
           seeds=[bytes([1, 0, 0] + [0] * 8) + bytes([3, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0])]),
    Target("crt571", _stream(crt571.Crt571Codec),
           seeds=[b"\x0f" + bytes([crt571.ACK]) + _crt571_reply(b"P10" + b"000"),
                  b"\x0f" + _crt571_reply(b"N10" + b"01")]),
    Target("k720", _stream(k720.K720Codec),
           seeds=[b"\x0f" + bytes([k720.ACK]) + b"00" + _k720_reply(b"SF0000"),
                  b"\x0f" + _k720_reply(b"NAP\x00") + _k720_reply(b"PDC")]),
    Target("idcard-frames", _stream(idcard.IdCardCodec),
           seeds=[b"\x0f" + _idcard_reply(0x90), b"\x0f" + _idcard_reply(0x9F, bytes(8))]),
    Target("idcard-base-info", _id_base_info, (idcard.IdCardError,), seeds=[_id_text_seed()]),
    Target("at", _at, seeds=[b"\x0f\r\n+CSQ: 20,99\r\n\r\nOK\r\n", b"\x0f\r\n+CMTI: \"SM\",3\r\n> "]),
    Target("escpos-status", _escpos, seeds=[bytes([0x16, 0x12, 0x12, 0x12])]),
    Target("sms-pdu", _sms, (sms_pdu.PduError,),
           seeds=[sms_pdu.encode_sms("13800138000", "充值成功 Top-up done")[0].data,
                  sms_pdu.encode_sms("+8613800138000", "hello world " * 20)[1].data]),
    Target("usim-codec", _usim, seeds=[bytes.fromhex("98680010325476981032"), bytes.fromhex("084906001032547698")]),
    Target("usim-card-apdu", _usim_card, seeds=[bytes.fromhex("0700A4000C023F00" "0500B000000A")]),
    Target("sim-writer-replies", _sim_writer, seeds=[b"\x00\x90\x00\x0a" + bytes.fromhex("98680010325476981032") + b"\x90\x00"]),
    Target("mqtt-command", _mqtt_command, (ValueError,),  # CommandError, below
           seeds=[_command("inhibit_cash", {"inhibit": True}), _command("set_config", {"key": "flows.idle_timeout",
                                                                                          "value": 30})]),
    Target("hall-ingest", _hall_ingest, (ValueError,),  # Malformed
           seeds=[b"\x00" + json.dumps({"schema": 1, "kiosk": "K1", "hall": "H1", "msg_seq": 3, "txn": "K1-1-2",
                                        "service": "topup", "amount_fen": 1000}).encode(),
                  b"\x01" + json.dumps({"schema": 1, "msg_seq": 4, "kind": "fault", "device": "bill"}).encode()]),
    Target("local-api", _local_api, seeds=[b'{"cmd": "begin", "service": "topup"}', b'{"cmd": "answer", "value": 1}']),
    Target("config", _config, seeds=[SEED_CONFIG]),
)}


def _declare_command_error() -> None:
    from controller.commands import CommandError

    TARGETS["mqtt-command"].declared = (CommandError,)
    from hall.store import Malformed

    TARGETS["hall-ingest"].declared = (Malformed,)


_declare_command_error()
