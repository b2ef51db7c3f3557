"""SMS-SUBMIT PDUs for AT+CMGS in PDU mode (TS 23.040 §9.2.2.2; notes gsm-sms-pdu.md §6.2-6.3).

Sans-I/O: text in, PDUs out; PDU bytes in, a decoded ``Submit`` out. Chinese goes as UCS2
(really UTF-16BE, §6.3), text that fits the GSM 7-bit default alphabet (TS 23.038 §6.2.1) goes
packed as septets. Long texts become concatenated parts with an 8-bit-reference UDH
(``05 00 03 ref total seq``), the part count being ceil(len / per-part) — python-gsmmodem's
``int(len/70)+1`` loses characters for some lengths (§6.3), which is why this is our own.
"""
from __future__ import annotations

from dataclasses import dataclass


class PduError(ValueError):
    """A number, text or PDU this codec cannot encode or decode; the message says which."""


# TS 23.038 §6.2.1 default alphabet, index = septet value. 0x1B is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC) == 128
# TS 23.038 §6.2.1.1 extension table (after 0x1B): each costs two septets.
GSM7_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
_BASIC_INDEX = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != 0x1B}
_EXT_REVERSE = {v: k for k, v in GSM7_EXT.items()}

# First octet bits (§6.2 of the notes; TS 23.040 §9.2.3)
FO_SUBMIT = 0x01
FO_VPF_RELATIVE = 0x10
FO_SRR = 0x20
FO_UDHI = 0x40

DCS_GSM7 = 0x00
DCS_8BIT = 0x04
DCS_UCS2 = 0x08

VP_4_DAYS = 0xAA  # relative VP: 168-196 -> (VP-166) days

# Per-part capacities (§6.3): single part / with the 6-octet 8-bit-reference UDH
UCS2_SINGLE, UCS2_PART = 70, 67
GSM7_SINGLE, GSM7_PART = 160, 153


def gsm7_septets(text: str) -> list[list[int]] | None:
    """Septets per character (1 or 2 with the escape), or None if the text needs UCS2."""
    out: list[list[int]] = []
    for ch in text:
        if ch in _BASIC_INDEX:
            out.append([_BASIC_INDEX[ch]])
        elif ch in GSM7_EXT:
            out.append([0x1B, GSM7_EXT[ch]])
        else:
            return None
    return out


def encode_address(number: str) -> bytes:
    """TP-DA: length in digits, type (0x91 with '+', else 0x81), swapped BCD padded with F."""
    digits = number.strip().replace(" ", "").replace("-", "")
    toa = 0x81
    if digits.startswith("+"):
        toa, digits = 0x91, digits[1:]
    if not digits or len(digits) > 20:
        raise PduError(f"bad phone number {number!r}")
    semi = []
    for d in digits:
        if d.isdigit():
            semi.append(int(d))
        elif d == "*":
            semi.append(0xA)
        elif d == "#":
            semi.append(0xB)
        else:
            raise PduError(f"bad phone number {number!r}: {d!r} is not a digit")
    if len(semi) % 2:
        semi.append(0xF)
    body = bytes(semi[i] | (semi[i + 1] << 4) for i in range(0, len(semi), 2))
    return bytes([len(digits), toa]) + body


def decode_address(data: bytes, pos: int) -> tuple[str, int]:
    """Inverse of ``encode_address`` starting at ``pos``; returns (number, position after)."""
    if pos + 2 > len(data):
        raise PduError("address truncated")
    ndigits, toa = data[pos], data[pos + 1]
    nbytes = (ndigits + 1) // 2
    body = data[pos + 2 : pos + 2 + nbytes]
    if len(body) != nbytes:
        raise PduError("address digits truncated")
    chars = []
    for b in body:
        for nib in (b & 0x0F, b >> 4):
            chars.append("0123456789*#abcF"[nib])
    number = "".join(chars[:ndigits])
    if "F" in number:
        raise PduError("filler nibble inside the number")
    return ("+" if toa == 0x91 else "") + number, pos + 2 + nbytes


@dataclass(frozen=True)
class Pdu:
    """One SMS-SUBMIT as sent after AT+CMGS: SMSC field ``00`` then the TPDU."""

    data: bytes

    @property
    def tpdu_length(self) -> int:
        """What AT+CMGS=<n> wants: octets after the SMSC field (§6.1 step 3)."""
        return len(self.data) - 1 - self.data[0]

    @property
    def hex(self) -> str:
        return self.data.hex().upper()


def _pack_septets(prefix: bytes, septets: list[int]) -> bytes:
    """UD bits LSB first: UDH octets, fill bits to a septet boundary, then the septets (§6.3)."""
    head_bits = len(prefix) * 8
    start = head_bits + (-head_bits) % 7
    acc = int.from_bytes(prefix, "little")
    for i, s in enumerate(septets):
        acc |= s << (start + 7 * i)
    total = start + 7 * len(septets)
    return acc.to_bytes((total + 7) // 8, "little")


def _split(units: list[list[int]], limit: int) -> list[list[int]]:
    """Cut at character boundaries so a surrogate pair or an escape pair never spans two parts."""
    parts: list[list[int]] = [[]]
    for unit in units:
        if len(parts[-1]) + len(unit) > limit:
            parts.append([])
        parts[-1].extend(unit)
    return parts


def encode_sms(
    number: str,
    text: str,
    *,
    concat_ref: int = 0,
    validity: int | None = VP_4_DAYS,
    status_report: bool = False,
) -> list[Pdu]:
    """The PDUs for ``text`` to ``number``: one, or several parts sharing ``concat_ref`` (0-255)."""
    if not 0 <= concat_ref <= 255:
        raise PduError("concat_ref is one octet")
    if validity is not None and not 0 <= validity <= 255:
        raise PduError("relative validity is one octet")
    address = encode_address(number)
    septets = gsm7_septets(text)
    if septets is not None:
        dcs, single, per_part = DCS_GSM7, GSM7_SINGLE, GSM7_PART
        units = septets
    else:
        dcs, single, per_part = DCS_UCS2, UCS2_SINGLE, UCS2_PART
        units = []
        for ch in text:
            raw = ch.encode("utf-16-be")
            units.append([int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)])
    count = sum(len(u) for u in units)
    chunks = [[x for u in units for x in u]] if count <= single else _split(units, per_part)
    if len(chunks) > 255:
        raise PduError("text too long for 255 parts")
    pdus = []
    for seq, chunk in enumerate(chunks, start=1):
        udh = b"" if len(chunks) == 1 else bytes([5, 0x00, 3, concat_ref, len(chunks), seq])
        fo = FO_SUBMIT | (FO_UDHI if udh else 0) | (FO_SRR if status_report else 0)
        if validity is not None:
            fo |= FO_VPF_RELATIVE
        if dcs == DCS_GSM7:
            ud = _pack_septets(udh, chunk)
            head_septets = (len(udh) * 8 + 6) // 7
            udl = head_septets + len(chunk)
        else:
            ud = udh + b"".join(u.to_bytes(2, "big") for u in chunk)
            udl = len(ud)
        tpdu = bytes([fo, 0x00]) + address + bytes([0x00, dcs])
        if validity is not None:
            tpdu += bytes([validity])
        tpdu += bytes([udl]) + ud
        pdus.append(Pdu(b"\x00" + tpdu))
    return pdus


@dataclass(frozen=True)
class Submit:
    """A decoded SMS-SUBMIT (what the modem was asked to send)."""

    number: str
    text: str
    dcs: int
    validity: int | None
    concat: tuple[int, int, int] | None  # (ref, total, seq)
    status_report: bool = False


def decode_submit(data: bytes) -> Submit:
    """Parse an SMS-SUBMIT with its SMSC field; raises PduError (only) on anything malformed."""
    try:
        return _decode_submit(bytes(data))
    except PduError:
        raise
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise PduError(f"malformed PDU: {exc}") from None


def _decode_submit(data: bytes) -> Submit:
    if not data:
        raise PduError("empty PDU")
    pos = 1 + data[0]  # skip SMSC
    if pos + 2 > len(data):
        raise PduError("truncated before TP-DA")
    fo = data[pos]
    if fo & 0x03 != FO_SUBMIT:
        raise PduError(f"first octet {fo:#04x} is not SMS-SUBMIT")
    vpf = (fo >> 3) & 0x03
    number, pos = decode_address(data, pos + 2)
    if pos + 3 > len(data):
        raise PduError("truncated before TP-UDL")
    dcs = data[pos + 1]
    pos += 2
    validity = None
    if vpf == 0b10:
        validity = data[pos]
        pos += 1
    elif vpf in (0b01, 0b11):
        pos += 7  # enhanced / absolute VP: 7 octets we do not interpret
    udl = data[pos]
    ud = data[pos + 1 :]
    coding = (dcs >> 2) & 0x03 if dcs & 0xC0 == 0 else None
    if coding is None:
        raise PduError(f"data coding scheme {dcs:#04x} not supported")
    udh = b""
    if coding == 0:  # GSM 7-bit: UDL counts septets
        nbytes = (udl * 7 + 7) // 8
        if len(ud) < nbytes:
            raise PduError("user data shorter than TP-UDL")
        ud = ud[:nbytes]
        if fo & FO_UDHI:
            udh = ud[: 1 + ud[0]]
        head_bits = len(udh) * 8
        start = head_bits + (-head_bits) % 7
        acc = int.from_bytes(ud, "little")
        n = udl - start // 7
        if n < 0:
            raise PduError("UDH longer than the user data")
        septets = [(acc >> (start + 7 * i)) & 0x7F for i in range(n)]
        text = _gsm7_text(septets)
    else:
        if len(ud) < udl:
            raise PduError("user data shorter than TP-UDL")
        ud = ud[:udl]
        if fo & FO_UDHI:
            if not ud or 1 + ud[0] > len(ud):
                raise PduError("UDH longer than the user data")
            udh, ud = ud[: 1 + ud[0]], ud[1 + ud[0] :]
        if coding == 2:
            if len(ud) % 2:
                raise PduError("odd UCS2 length")
            text = ud.decode("utf-16-be", errors="surrogatepass")
        else:
            text = ud.decode("latin-1")
    return Submit(number, text, dcs, validity, _concat(udh), bool(fo & FO_SRR))


def _gsm7_text(septets: list[int]) -> str:
    out = []
    escape = False
    for s in septets:
        if escape:
            out.append(_EXT_REVERSE.get(s, " "))
            escape = False
        elif s == 0x1B:
            escape = True
        else:
            out.append(GSM7_BASIC[s])
    return "".join(out)


def _concat(udh: bytes) -> tuple[int, int, int] | None:
    """Find IE 00 (8-bit ref) or 08 (16-bit ref) in a UDH (TS 23.040 §9.2.3.24.1/.8)."""
    i = 1
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        value = udh[i + 2 : i + 2 + length]
        if iei == 0x00 and len(value) == 3:
            return value[0], value[1], value[2]
        if iei == 0x08 and len(value) == 4:
            return int.from_bytes(value[:2], "big"), value[2], value[3]
        i += 2 + length
    return None


def reassemble(parts: list[Submit]) -> str:
    """Join the parts of one concatenated message in sequence order (duplicates collapse)."""
    by_seq = {p.concat[2] if p.concat else 1: p.text for p in parts}
    return "".join(by_seq[k] for k in sorted(by_seq))
