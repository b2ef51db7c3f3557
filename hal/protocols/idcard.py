"""Second-generation resident ID card readers (公安部 SAM "SAM_V" serial frames), host side, without I/O.

    codec = IdCardCodec()
    wire = encode(FIND)                 # AA AA AA 96 69 00 03 20 01 22
    codec.feed(chunk, now)
    for event in codec.events(): ...    # Reply(sw1, sw2, sw3, data) or BadFrame(reason, raw)

Frames (reader notes §3.1):
    command   AA AA AA 96 69 | LEN_H LEN_L | CMD PARA | [data]  | CHK
    response  AA AA AA 96 69 | LEN_H LEN_L | SW1 SW2 SW3 | [data] | CHK
LEN counts every byte after itself, CHK included; CHK = XOR of LEN_H .. the byte before CHK.

The text block (256 bytes of UCS-2LE, §3.4) is decoded by ``parse_text``; the ID number's
check digit (GB 11643-1999, ISO 7064 MOD 11-2, §3.6) by ``check_digit``; the card's validity
dates by ``validate`` against a date the caller passes in (the kiosk's clock, never read here).
The 1024-byte WLT photo stays opaque (§3.5: no public decoder).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PREAMBLE = bytes.fromhex("AAAAAA9669")
HEADER = len(PREAMBLE) + 2  # preamble + LEN_H LEN_L
MAX_LEN = 4096  # the longest reply (30 10 with a 1024-byte fingerprint) has LEN 2314

# §3.2: (CMD, PARA)
RESET_SAM = (0x10, 0xFF)
SAM_STATUS = (0x11, 0xFF)
SAM_ID = (0x12, 0xFF)
FIND = (0x20, 0x01)
SELECT = (0x20, 0x02)
READ_BASE = (0x30, 0x01)  # text + photo
READ_BASE_FP = (0x30, 0x10)  # text + photo + fingerprint

# §3.3: SW3
SW_OK = 0x90
SW_FOUND = 0x9F
SW_TEXT: dict[int, str] = {
    0x90: "success",
    0x9F: "card found",
    0x10: "checksum error in the command",
    0x11: "length error in the command",
    0x21: "unknown command",
    0x23: "unauthorised operation",
    0x24: "unrecognised error",
    0x31: "card failed to authenticate the SAM",
    0x32: "SAM failed to authenticate the card",
    0x33: "information verification error",
    0x40: "unrecognised card type",
    0x41: "card read failed",
    0x47: "random number failure",
    0x60: "SAM self-test failed",
    0x66: "SAM not authorised",
    0x80: "no card",
    0x81: "select card failed",
    0x91: "no content on card",
}

TEXT_LEN = 256
PHOTO_LEN = 1024

# §3.4 GB 3304 ethnicity codes. 46 is 德昂 (one public C source misspells it).
NATIONS: dict[str, str] = {
    "01": "汉", "02": "蒙古", "03": "回", "04": "藏", "05": "维吾尔", "06": "苗", "07": "彝", "08": "壮",
    "09": "布依", "10": "朝鲜", "11": "满", "12": "侗", "13": "瑶", "14": "白", "15": "土家", "16": "哈尼",
    "17": "哈萨克", "18": "傣", "19": "黎", "20": "傈僳", "21": "佤", "22": "畲", "23": "高山", "24": "拉祜",
    "25": "水", "26": "东乡", "27": "纳西", "28": "景颇", "29": "柯尔克孜", "30": "土", "31": "达斡尔",
    "32": "仫佬", "33": "羌", "34": "布朗", "35": "撒拉", "36": "毛南", "37": "仡佬", "38": "锡伯",
    "39": "阿昌", "40": "普米", "41": "塔吉克", "42": "怒", "43": "乌孜别克", "44": "俄罗斯", "45": "鄂温克",
    "46": "德昂", "47": "保安", "48": "裕固", "49": "京", "50": "塔塔尔", "51": "独龙", "52": "鄂伦春",
    "53": "赫哲", "54": "门巴", "55": "珞巴", "56": "基诺", "97": "其他", "98": "外国血统中国籍人士",
}
# §3.4 GB/T 2261.1
GENDERS: dict[str, str] = {"0": "未知", "1": "男", "2": "女", "9": "未说明"}
LONG_TERM = "长期"

# §3.4: (field, byte offset, byte length)
TEXT_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("name", 0, 30),
    ("gender", 30, 2),
    ("nation", 32, 4),
    ("birth", 36, 16),
    ("address", 52, 70),
    ("id_number", 122, 36),
    ("authority", 158, 30),
    ("valid_from", 188, 16),
    ("valid_to", 204, 16),
)

# §3.6: weights 2^(17-i) mod 11, check characters indexed by S mod 11
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


class IdCardError(ValueError):
    """A block or field that does not follow the spec; the message says which and why."""


def xor(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode(command: tuple[int, int], data: bytes = b"") -> bytes:
    """A command frame (§3.1), e.g. ``encode(FIND)``."""
    cmd, para = command
    body = (len(data) + 3).to_bytes(2, "big") + bytes([cmd, para]) + data
    return PREAMBLE + body + bytes([xor(body)])


@dataclass(frozen=True)
class Reply:
    sw1: int
    sw2: int
    sw3: int
    data: bytes = b""

    @property
    def meaning(self) -> str:
        return SW_TEXT.get(self.sw3, f"unknown status {self.sw3:02X}")


@dataclass(frozen=True)
class BadFrame:
    reason: str
    raw: bytes


Event = Reply | BadFrame


class IdCardCodec:
    """Host side; never raises on input: garbage, bad lengths and bad checksums become BadFrame.

    Resync: bytes before a preamble are noise; a frame whose checksum fails is dropped from
    its first byte only, so a real preamble hidden behind a garbled length is still found.
    ``gap`` (s): a frame still incomplete this long after its last byte is dropped.
    """

    def __init__(self, gap: float = 0.5) -> None:
        self.gap = gap
        self._buf = bytearray()
        self._last = 0.0
        self._events: list[Event] = []

    def reset(self) -> None:
        self._buf.clear()
        self._events.clear()

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def feed(self, data: bytes, now: float = 0.0) -> None:
        if self._buf and now - self._last > self.gap:
            self._events.append(BadFrame("incomplete frame", bytes(self._buf[:64])))
            self._drop_head()
        if data:
            self._last = now
        self._buf += data
        self._parse()

    def _drop_head(self) -> None:
        """Drop the first byte and any noise up to the next preamble (or a prefix of one)."""
        buf = self._buf
        at = buf.find(PREAMBLE, 1)
        if at < 0:  # keep a tail that may be the start of a preamble
            at = len(buf)
            for k in range(min(len(PREAMBLE) - 1, len(buf) - 1), 0, -1):
                if buf.endswith(PREAMBLE[:k]):
                    at = len(buf) - k
                    break
        del buf[:at]

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            if not buf.startswith(PREAMBLE[: min(len(buf), len(PREAMBLE))]):
                raw = bytes(buf)
                self._drop_head()
                self._events.append(BadFrame("noise", raw[: len(raw) - len(buf)][:64]))
                continue
            if len(buf) < HEADER:
                return
            length = buf[5] << 8 | buf[6]
            if length < 4 or length > MAX_LEN:  # SW1 SW2 SW3 CHK at least
                raw = bytes(buf[:HEADER])
                self._drop_head()
                self._events.append(BadFrame(f"bad length {length}", raw))
                continue
            total = HEADER + length
            if len(buf) < total:
                return
            frame = bytes(buf[:total])
            if xor(frame[5:-1]) != frame[-1]:
                self._drop_head()
                self._events.append(BadFrame("bad checksum", frame[:64]))
                continue
            del buf[:total]
            self._events.append(Reply(frame[7], frame[8], frame[9], frame[10:-1]))


# -- the base-info reply -----------------------------------------------------------------

@dataclass(frozen=True)
class BaseInfo:
    text: bytes  # 256 bytes UCS-2LE
    photo: bytes  # 1024 bytes WLT, opaque
    fingerprint: bytes = b""


def split_base_info(data: bytes, with_fingerprint: bool = False) -> BaseInfo:
    """The data of a 30 01 / 30 10 reply (§3.3): length fields, then text, photo, fingerprint."""
    fields = 3 if with_fingerprint else 2
    if len(data) < 2 * fields:
        raise IdCardError(f"base info of {len(data)} bytes has no length fields")
    lengths = [int.from_bytes(data[2 * i: 2 * i + 2], "big") for i in range(fields)]
    if len(data) != 2 * fields + sum(lengths):
        raise IdCardError(f"base info lengths {lengths} do not add up to {len(data) - 2 * fields} bytes")
    if lengths[0] != TEXT_LEN:
        raise IdCardError(f"text block of {lengths[0]} bytes, expected {TEXT_LEN}")
    at = 2 * fields
    text = data[at: at + lengths[0]]
    photo = data[at + lengths[0]: at + lengths[0] + lengths[1]]
    fp = data[at + lengths[0] + lengths[1]:] if with_fingerprint else b""
    return BaseInfo(text, photo, fp)


@dataclass(frozen=True)
class IdText:
    """The card's text fields, as printed on it (§3.4)."""

    name: str
    gender: str  # code, "1" male
    nation: str  # code, "01" 汉
    birth: str  # YYYYMMDD
    address: str
    id_number: str
    authority: str
    valid_from: str  # YYYYMMDD
    valid_to: str  # YYYYMMDD or 长期

    @property
    def gender_name(self) -> str:
        return GENDERS.get(self.gender, "未知")

    @property
    def nation_name(self) -> str:
        return NATIONS.get(self.nation, f"未知({self.nation})")


def parse_text(block: bytes) -> IdText:
    """Decode the 256-byte UCS-2LE block; padding spaces (and NULs) stripped."""
    if len(block) != TEXT_LEN:
        raise IdCardError(f"text block of {len(block)} bytes, expected {TEXT_LEN}")
    values: dict[str, str] = {}
    for field, offset, size in TEXT_FIELDS:
        try:
            values[field] = block[offset: offset + size].decode("utf-16-le").strip(" \x00")
        except UnicodeDecodeError as exc:
            raise IdCardError(f"{field}: not UCS-2LE: {exc}") from None
    return IdText(**values)


def check_digit(first17: str) -> str:
    """GB 11643-1999: the 18th character for the first 17 digits (§3.6)."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise IdCardError(f"{first17!r} is not 17 digits")
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def _date(value: str, what: str) -> dt.date:
    if len(value) != 8 or not value.isdigit() or not value.isascii():
        raise IdCardError(f"{what} {value!r} is not YYYYMMDD")
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise IdCardError(f"{what} {value!r} is not a date") from None


def problems(card: IdText, today: dt.date) -> list[str]:
    """What makes the card unusable today, as codes: bad_id_number, bad_check_digit, bad_dates,
    expired, not_yet_valid. Empty when the card is good."""
    out: list[str] = []
    number = card.id_number.upper()
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        out.append("bad_id_number")
    elif check_digit(number[:17]) != number[17]:
        out.append("bad_check_digit")
    try:
        start = _date(card.valid_from, "valid_from")
        end = None if card.valid_to == LONG_TERM else _date(card.valid_to, "valid_to")
        _date(card.birth, "birth")
    except IdCardError:
        return out + ["bad_dates"]
    if end is not None and today > end:
        out.append("expired")
    if today < start:
        out.append("not_yet_valid")
    return out


def mask_id_number(number: str) -> str:
    """110105********002X: region code and the last four, never the birth date."""
    if len(number) < 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_name(name: str) -> str:
    """张* / 欧阳** : the family name's first character only."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""
