"""A GSM modem (SIM800/SIM7600/EC20 class) on its AT port, written from 27.005/27.007 and notes §6.

Answers the commands a kiosk uses, runs the AT+CMGS prompt flow in PDU mode, and keeps every
PDU it was given. It decodes them with its own reader below (not hal.protocols.sms_pdu: a
misunderstanding shared with the driver must not cancel out), so ``sent`` shows the texts.

Control: sent, set_signal {rssi}, set_registered {registered}, fail_next {code, count}, clear.
"""
from __future__ import annotations

from typing import Any

from .model import ControlError, EmulatorModel

_GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}


class PduReject(Exception):
    """The PDU the host sent is not a well-formed SMS-SUBMIT (the modem answers +CMS ERROR: 304)."""


def read_submit(hex_text: str) -> dict[str, Any]:
    """Decode an SMS-SUBMIT given as hex text, walking it the way TS 23.040 §9.2.2.2 lays it out."""
    try:
        octets = list(bytes.fromhex(hex_text))
    except ValueError:
        raise PduReject("not hex") from None
    cursor = [0]

    def take(n: int = 1) -> list[int]:
        if cursor[0] + n > len(octets):
            raise PduReject("PDU ends early")
        got = octets[cursor[0] : cursor[0] + n]
        cursor[0] += n
        return got

    smsc_len = take()[0]
    take(smsc_len)
    first = take()[0]
    if first & 0b11 != 0b01:
        raise PduReject("not SMS-SUBMIT")
    take()  # TP-MR
    digits, ton = take(2)
    number = ""
    for octet in take((digits + 1) // 2):
        number += "%X%X" % (octet & 0xF, octet >> 4)
    number = number[:digits].replace("A", "*").replace("B", "#")
    if ton == 0x91:
        number = "+" + number
    take()  # TP-PID
    dcs = take()[0]
    vp_format = (first >> 3) & 0b11
    take({0: 0, 2: 1}.get(vp_format, 7))
    udl = take()[0]
    rest = octets[cursor[0] :]
    udh_present = bool(first & 0x40)
    alphabet = (dcs >> 2) & 0b11 if dcs < 0x40 else -1
    concat = None
    if alphabet == 0:
        # Septets, LSB first: build a bit string from the last octet down and cut 7-bit pieces.
        need = -(-udl * 7 // 8)
        if len(rest) < need:
            raise PduReject("UD shorter than UDL")
        bits = "".join(format(o, "08b") for o in reversed(rest[:need]))[::-1]  # bit i = bits[i]
        skip_bits = 0
        if udh_present:
            header = rest[: rest[0] + 1]
            concat = _concat_ie(header)
            skip_bits = len(header) * 8
            skip_bits += (7 - skip_bits % 7) % 7
        septets = []
        for i in range(skip_bits, udl * 7, 7):
            septets.append(int(bits[i : i + 7][::-1], 2))
        text, i = "", 0
        while i < len(septets):
            if septets[i] == 0x1B and i + 1 < len(septets):
                text += _GSM7_EXT.get(septets[i + 1], "?")
                i += 2
            else:
                text += _GSM7[septets[i]]
                i += 1
    elif alphabet == 2:
        if len(rest) < udl:
            raise PduReject("UD shorter than UDL")
        body = rest[:udl]
        if udh_present:
            header = body[: body[0] + 1]
            concat = _concat_ie(header)
            body = body[len(header) :]
        units = [(body[i] << 8) | body[i + 1] for i in range(0, len(body) - 1, 2)]
        text = ""
        i = 0
        while i < len(units):
            u = units[i]
            if 0xD800 <= u < 0xDC00 and i + 1 < len(units):
                text += chr(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00))
                i += 2
            else:
                text += chr(u)
                i += 1
    else:
        raise PduReject(f"DCS {dcs:#x} not handled")
    return {"number": number, "text": text, "dcs": dcs, "concat": concat}


def _concat_ie(header: list[int]) -> tuple[int, int, int] | None:
    i = 1
    while i + 1 < len(header):
        iei, n = header[i], header[i + 1]
        if iei == 0 and n == 3:
            return header[i + 2], header[i + 3], header[i + 4]
        if iei == 8 and n == 4:
            return (header[i + 2] << 8) | header[i + 3], header[i + 4], header[i + 5]
        i += 2 + n
    return None


class GsmModemModel(EmulatorModel):
    name = "modem"
    tick_interval = 0.05  # for +CREG URCs after set_registered

    def __init__(self, rssi: int = 20, registered: bool = True) -> None:
        self.echo = True  # V.250: modems power up with echo on
        self.cmee = 0
        self.cmgf = 0
        self.creg_n = 0
        self.rssi = rssi
        self.registered = registered
        self.fail_code: int | None = None
        self.fail_count = 0
        self.mr = 0
        self._line = bytearray()
        self._body: bytearray | None = None  # collecting the PDU after "> "
        self._body_len = 0
        self._urcs: list[bytes] = []
        self.pdus: list[dict[str, Any]] = []  # every PDU: hex, mr, decoded
        self.sent: list[dict[str, Any]] = []  # whole messages
        self._partial: dict[tuple[str, int, int], dict[int, tuple[str, int]]] = {}
        self.commands: list[str] = []

    # -- bytes -------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        for byte in data:
            if self._body is not None:
                out += self._body_byte(byte)
                continue
            if byte in (0x0D, 0x0A):
                if byte == 0x0D and self._line:
                    line = self._line.decode("ascii", errors="replace")
                    self._line.clear()
                    if self.echo:
                        out += line.encode() + b"\r"
                    out += self._command(line.strip())
                continue
            if len(self._line) < 600:
                self._line.append(byte)
        return bytes(out)

    def tick(self, now: float) -> bytes:
        urcs, self._urcs = self._urcs, []
        return b"".join(urcs)

    def _body_byte(self, byte: int) -> bytes:
        assert self._body is not None
        if byte == 0x1B:  # ESC: abort, 27.005 §3.5.1
            self._body = None
            return b"\r\nOK\r\n"
        if byte != 0x1A:
            if len(self._body) < 1200:
                self._body.append(byte)
            return b""
        text = self._body.decode("ascii", errors="replace").strip()
        self._body = None
        return self._submit(text)

    def _ok(self, *lines: str) -> bytes:
        return b"".join(b"\r\n" + l.encode() + b"\r\n" for l in lines) + b"\r\nOK\r\n"

    def _error(self, kind: str = "", code: int = 0) -> bytes:
        if kind and self.cmee:
            return f"\r\n+{kind} ERROR: {code}\r\n".encode()
        return b"\r\nERROR\r\n"

    def _cms(self, code: int) -> bytes:
        # +CMS ERROR is always given for SMS commands (27.005 §3.2.5), CMEE only picks numeric/verbose
        return f"\r\n+CMS ERROR: {code}\r\n".encode()

    # -- commands (27.007 / 27.005) ----------------------------------------------------
    def _command(self, line: str) -> bytes:
        self.commands.append(line)
        up = line.upper()
        if not up.startswith("AT"):
            return self._error()
        body = up[2:]
        if body in ("", "Z"):
            return self._ok()
        if body in ("E0", "E1"):
            self.echo = body == "E1"
            return self._ok()
        if body in ("I", "+CGMI"):
            return self._ok("SIMCOM_Ltd" if body == "+CGMI" else "SIM800 R14.18")
        if body == "+CGMM":
            return self._ok("SIMCOM_SIM800")
        if body in ("+CGMR", "+GMR"):  # 27.007 §5.3; SIM800 firmwares answer "Revision:..."
            return self._ok("Revision:1418B05SIM800L24")
        if body in ("+CGSN", "+GSN"):
            return self._ok("867856030000001")
        if body == "+CPIN?":
            return self._ok("+CPIN: READY")
        if body.startswith("+CMEE="):
            return self._set_int("cmee", body[6:], (0, 1, 2))
        if body.startswith("+CMGF="):
            return self._set_int("cmgf", body[6:], (0, 1))
        if body == "+CMGF?":
            return self._ok(f"+CMGF: {self.cmgf}")
        if body.startswith("+CSCS="):
            return self._ok() if body[6:].strip('"') in ("GSM", "UCS2", "IRA", "HEX") else self._error("CME", 4)
        if body == "+CSQ":
            return self._ok(f"+CSQ: {self.rssi},99")
        if body.startswith("+CREG="):
            return self._set_int("creg_n", body[6:], (0, 1, 2))
        if body == "+CREG?":
            return self._ok(f"+CREG: {self.creg_n},{1 if self.registered else 2}")
        if body == "+CEREG?":  # a 2G SIM800 has no EPS registration
            return self._error("CME", 4)
        if body.startswith("+CMGS="):
            return self._cmgs(body[6:])
        return self._error()

    def _set_int(self, attr: str, value: str, allowed: tuple[int, ...]) -> bytes:
        if not value.isdigit() or int(value) not in allowed:
            return self._error("CME", 4)
        setattr(self, attr, int(value))
        return self._ok()

    def _cmgs(self, arg: str) -> bytes:
        if self.cmgf != 0:
            return self._cms(302)  # text mode: not what this emulator does
        if not arg.isdigit() or not 7 <= int(arg) <= 164:
            return self._cms(304)
        self._body = bytearray()
        self._body_len = int(arg)
        return b"\r\n> "

    def _submit(self, hex_text: str) -> bytes:
        try:
            # <n> of AT+CMGS counts the octets after the SMSC field (notes §6.1 step 3)
            if len(hex_text) % 2 or len(hex_text) // 2 - 1 - int(hex_text[:2], 16) != self._body_len:
                raise PduReject("length disagrees with AT+CMGS=<n>")
            decoded = read_submit(hex_text)
        except (PduReject, ValueError, IndexError):
            return self._cms(304)  # invalid PDU mode parameter
        if self.fail_count > 0 and self.fail_code is not None:
            self.fail_count -= 1
            self.pdus.append({"hex": hex_text, "mr": None, "failed": self.fail_code})
            return self._cms(self.fail_code)
        if not self.registered:
            self.pdus.append({"hex": hex_text, "mr": None, "failed": 331})
            return self._cms(331)  # no network service
        self.mr = (self.mr + 1) % 256
        self.pdus.append({"hex": hex_text, "mr": self.mr, **decoded})
        self._collect(decoded, self.mr)
        return f"\r\n+CMGS: {self.mr}\r\n\r\nOK\r\n".encode()

    def _collect(self, decoded: dict[str, Any], mr: int) -> None:
        concat = decoded["concat"]
        if concat is None:
            self.sent.append({"number": decoded["number"], "text": decoded["text"], "parts": 1, "refs": [mr]})
            return
        ref, total, seq = concat
        key = (decoded["number"], ref, total)
        parts = self._partial.setdefault(key, {})
        parts[seq] = (decoded["text"], mr)
        if len(parts) == total and set(parts) == set(range(1, total + 1)):
            del self._partial[key]
            self.sent.append({
                "number": decoded["number"],
                "text": "".join(parts[i][0] for i in range(1, total + 1)),
                "parts": total,
                "refs": [parts[i][1] for i in range(1, total + 1)],
            })

    # -- control -----------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "sent":
            return list(self.sent)
        if cmd == "set_signal":
            rssi = int(args["rssi"])
            if not (0 <= rssi <= 31 or rssi == 99):
                raise ControlError("rssi is 0..31 or 99 (27.007 §8.5)")
            self.rssi = rssi
            return None
        if cmd == "set_registered":
            value = bool(args.get("registered", args.get("value", True)))
            if value != self.registered and self.creg_n:
                self._urcs.append(f"\r\n+CREG: {1 if value else 2}\r\n".encode())
            self.registered = value
            return None
        if cmd == "fail_next":
            self.fail_code = int(args["code"])
            self.fail_count = int(args.get("count", 1))
            return None
        if cmd == "clear":
            self.sent.clear()
            self.pdus.clear()
            self._partial.clear()
            self.fail_count = 0
            return None
        raise ControlError(f"unknown command {cmd!r}")

    def snapshot(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "rssi": self.rssi,
            "echo": self.echo,
            "pdu_mode": self.cmgf == 0,
            "sent": list(self.sent),
            "pdus": [p["hex"] for p in self.pdus],
            "failed_attempts": sum(1 for p in self.pdus if p.get("failed")),
            "incomplete": len(self._partial),
        }
