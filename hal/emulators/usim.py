"""A blank programmable USIM, card side, written from the SIM notes §8 (TS 102 221 / TS 31.102 / pySim).

APDUs in, R-APDUs out; no I/O (hal/emulators/vpcd.py carries them to pcscd's vpcd reader).

File system (FIDs from §8.1; FCP templates per TS 102 221 §11.1.1.3: 82 descriptor, 83 FID,
84 AID for the ADF, 8A life cycle, 8B security reference, 80 size for transparent EFs, record
length and count in 82 for record EFs):

    MF 3F00
      EF.ICCID 2FE2 (10)      EF.DIR 2F00 (records of 32: the USIM application template)
      DF.TELECOM 7F10
      DF.GSM 7F20:   EF.IMSI 6F07 (9), EF.AD 6FAD (4), EF.SPN 6F46 (17), EF.ACC 6F78 (2), EF.LOCI 6F7E (11)
      DF 7FF0 (vendor): EF FF02 (32) Ki || OPc — where keys live is card-vendor specific; ours is this
      ADF.USIM A0000000871002FFFFFFFF8907090000:  the same five EFs, and EF.UST 6F38 (4)

Access (assumed, documented in docs/identity.md): everything is readable except the key file;
every UPDATE and reading the keys need ADM1 (VERIFY P2 0A) verified since the last power-on.
VERIFY without data answers the retry counter (63Cx, TS 102 221 §11.1.9); a wrong code answers
63Cx with x tries left, and at zero the key is blocked (6983) for good — as on a real card.

``t0=True`` (default): SELECT with FCP answers 61xx and the host fetches it with GET RESPONSE,
as a T=0 card does; with False the FCP comes back at once with 9000.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from .model import ControlError

USIM_AID = bytes.fromhex("A0000000871002FFFFFFFF8907090000")
ATR = bytes.fromhex("3B80800101")  # minimal T=1 ATR that pcscd 1.9.9 takes (vpcd notes §7.2)
_serials = itertools.count(1)


@dataclass
class EF:
    fid: int
    data: bytearray
    record_len: int = 0  # 0: transparent
    secret: bool = False  # readable only under ADM

    def fcp(self) -> bytes:
        if self.record_len:
            count = len(self.data) // self.record_len
            desc = bytes([0x42, 0x21]) + self.record_len.to_bytes(2, "big") + bytes([count])
        else:
            desc = bytes([0x41, 0x21])
        body = (_tlv(0x82, desc) + _tlv(0x83, self.fid.to_bytes(2, "big")) + _tlv(0x8A, b"\x05")
                + _tlv(0x8B, bytes.fromhex("2F0601")) + _tlv(0x80, len(self.data).to_bytes(2, "big")))
        return _tlv(0x62, body)


@dataclass
class DF:
    fid: int
    children: dict[int, "EF | DF"] = field(default_factory=dict)
    aid: bytes = b""
    parent: "DF | None" = None

    def add(self, node: "EF | DF") -> "EF | DF":
        self.children[node.fid] = node
        if isinstance(node, DF):
            node.parent = self
        return node

    def fcp(self) -> bytes:
        body = _tlv(0x82, bytes([0x78, 0x21])) + _tlv(0x83, self.fid.to_bytes(2, "big"))
        if self.aid:
            body += _tlv(0x84, self.aid)
        return _tlv(0x62, body + _tlv(0x8A, b"\x05") + _tlv(0xC6, bytes.fromhex("90017083010A")))


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value


def _sw(code: int, data: bytes = b"") -> bytes:
    return data + code.to_bytes(2, "big")


def _iccid_bytes(digits: str) -> bytes:
    """§8.2: pad to 20 with F, swap the nibbles of every byte."""
    padded = digits + "f" * (20 - len(digits))
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, 20, 2))


def _luhn(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


class UsimCard:
    """One blank card: its files, its ADM key and counters, and what is selected now."""

    def __init__(self, adm: str = "3838383838383838", adm_tries: int = 3, serial: int | None = None,
                 t0: bool = True) -> None:
        serial = next(_serials) if serial is None else serial
        iccid18 = f"898600{serial:012d}"
        self.iccid = iccid18 + _luhn(iccid18)
        self.adm = bytes.fromhex(adm)
        self.adm_max = 3
        self.adm_left = adm_tries
        self.t0 = t0
        self.mf = DF(0x3F00)
        self.mf.add(EF(0x2FE2, bytearray(_iccid_bytes(self.iccid))))
        app = _tlv(0x61, _tlv(0x4F, USIM_AID) + _tlv(0x50, b"USIM"))
        self.mf.add(EF(0x2F00, bytearray(app + b"\xff" * (32 - len(app))), record_len=32))
        self.mf.add(DF(0x7F10))
        gsm = self.mf.add(DF(0x7F20))
        vendor = self.mf.add(DF(0x7FF0))
        vendor.add(EF(0xFF02, bytearray(32), secret=True))
        self.adf = DF(0x7FFF, aid=USIM_AID)
        self.adf.parent = self.mf
        for df in (gsm, self.adf):
            df.add(EF(0x6F07, bytearray(b"\xff" * 9)))
            df.add(EF(0x6FAD, bytearray(4)))
            df.add(EF(0x6F46, bytearray(b"\xff" * 17)))
            df.add(EF(0x6F78, bytearray(2)))
            df.add(EF(0x6F7E, bytearray(b"\xff" * 11)))
        self.adf.add(EF(0x6F38, bytearray(bytes.fromhex("9E6B1C00"))))
        self.fail_next: dict[int, int] = {}  # INS -> status word to answer once (fault injection)
        self.stuck: set[int] = set()  # FIDs whose updates answer 9000 but do not stick (worn memory)
        self.power_on()

    def power_on(self) -> None:
        """Power-on or reset: MF selected, ADM no longer verified, nothing waiting."""
        self.df: DF = self.mf
        self.ef: EF | None = None
        self.adm_ok = False
        self.pending = b""

    # -- APDUs ---------------------------------------------------------------------------
    def apdu(self, cmd: bytes) -> bytes:
        if len(cmd) < 4:
            return _sw(0x6700)
        cla, ins, p1, p2 = cmd[:4]
        if cla & 0xF0 not in (0x00, 0x80):
            return _sw(0x6E00)  # CLA A0 (GSM 11.11) is not spoken by this card
        if ins in self.fail_next:
            return _sw(self.fail_next.pop(ins))
        body = cmd[5: 5 + cmd[4]] if len(cmd) > 5 else b""
        le = cmd[4] if len(cmd) == 5 else None
        if len(cmd) > 5 and len(cmd) not in (5 + cmd[4], 6 + cmd[4]):
            return _sw(0x6700)
        handler = {0xA4: self._select, 0xB0: self._read_binary, 0xD6: self._update_binary,
                   0xB2: self._read_record, 0xDC: self._update_record, 0x20: self._verify,
                   0xC0: self._get_response}.get(ins)
        if handler is None:
            return _sw(0x6D00)
        return handler(p1, p2, body, le)

    def _answer_fcp(self, fcp: bytes, p2: int) -> bytes:
        if p2 & 0x0C == 0x0C:  # no data requested
            return _sw(0x9000)
        if self.t0:
            self.pending = fcp
            return _sw(0x6100 | len(fcp))
        return _sw(0x9000, fcp)

    def _select(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        if p1 == 0x04:  # by DF name (AID), a right-truncated AID is enough
            if body and USIM_AID.startswith(body):
                self.df, self.ef = self.adf, None
                return self._answer_fcp(self.adf.fcp(), p2)
            return _sw(0x6A82)
        if p1 in (0x08, 0x09):  # path from MF / from the current DF, FIDs of 2 bytes
            if len(body) % 2 or not body:
                return _sw(0x6A87)
            node: EF | DF = self.mf if p1 == 0x08 else self.df
            for i in range(0, len(body), 2):
                fid = int.from_bytes(body[i: i + 2], "big")
                if not isinstance(node, DF) or fid not in node.children:
                    return _sw(0x6A82)
                node = node.children[fid]
            return self._land(node, p2)
        if p1 == 0x00:
            if len(body) != 2:
                return _sw(0x6A87)
            fid = int.from_bytes(body, "big")
            node = self._by_fid(fid)
            if node is None:
                return _sw(0x6A82)
            return self._land(node, p2)
        return _sw(0x6A86)

    def _by_fid(self, fid: int) -> "EF | DF | None":
        """TS 102 221 §8.4.1: MF, a child of the current DF, the current DF's parent, or itself."""
        if fid == 0x3F00:
            return self.mf
        if fid == 0x7FFF:
            return self.adf
        if fid in self.df.children:
            return self.df.children[fid]
        if self.df.parent is not None and self.df.parent.fid == fid:
            return self.df.parent
        if self.df.fid == fid:
            return self.df
        return None

    def _land(self, node: "EF | DF", p2: int) -> bytes:
        if isinstance(node, DF):
            self.df, self.ef = node, None
        else:
            self.ef = node
        return self._answer_fcp(node.fcp(), p2)

    def _get_response(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        if not self.pending:
            return _sw(0x6985)
        want = le or 256
        if want != len(self.pending):
            return _sw(0x6C00 | len(self.pending))  # wrong Le: ask again with this one
        data, self.pending = self.pending, b""
        return _sw(0x9000, data)

    def _ef(self, record: bool) -> "EF | bytes":
        if self.ef is None:
            return _sw(0x6986)
        if bool(self.ef.record_len) != record:
            return _sw(0x6981)
        return self.ef

    def _read_binary(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        ef = self._ef(record=False)
        if isinstance(ef, bytes):
            return ef
        if ef.secret and not self.adm_ok:
            return _sw(0x6982)
        offset = p1 << 8 | p2
        if offset > len(ef.data):
            return _sw(0x6B00)
        want = le or 256
        return _sw(0x9000, bytes(ef.data[offset: offset + want]))

    def _update_binary(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        ef = self._ef(record=False)
        if isinstance(ef, bytes):
            return ef
        if not self.adm_ok:
            return _sw(0x6982)
        offset = p1 << 8 | p2
        if offset + len(body) > len(ef.data):
            return _sw(0x6700)
        if ef.fid in self.stuck:
            return _sw(0x9000)
        ef.data[offset: offset + len(body)] = body
        return _sw(0x9000)

    def _record(self, p1: int, p2: int) -> "tuple[EF, int] | bytes":
        ef = self._ef(record=True)
        if isinstance(ef, bytes):
            return ef
        if p2 != 0x04 or not 1 <= p1 <= len(ef.data) // ef.record_len:
            return _sw(0x6A83)
        return ef, (p1 - 1) * ef.record_len

    def _read_record(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        at = self._record(p1, p2)
        if isinstance(at, bytes):
            return at
        ef, start = at
        return _sw(0x9000, bytes(ef.data[start: start + ef.record_len]))

    def _update_record(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        at = self._record(p1, p2)
        if isinstance(at, bytes):
            return at
        if not self.adm_ok:
            return _sw(0x6982)
        ef, start = at
        if len(body) != ef.record_len:
            return _sw(0x6700)
        ef.data[start: start + ef.record_len] = body
        return _sw(0x9000)

    def _verify(self, p1: int, p2: int, body: bytes, le: int | None) -> bytes:
        if p2 == 0x01:  # PIN1 is disabled on a blank card
            return _sw(0x9000)
        if p2 != 0x0A:
            return _sw(0x6A88)  # no such key reference
        if self.adm_left == 0:
            return _sw(0x6983)
        if not body:  # §11.1.9: no data = tell the retry counter
            return _sw(0x9000) if self.adm_ok else _sw(0x63C0 | self.adm_left)
        if len(body) != 8:
            return _sw(0x6700)
        if body == self.adm:
            self.adm_ok = True
            self.adm_left = self.adm_max
            return _sw(0x9000)
        self.adm_ok = False
        self.adm_left -= 1
        return _sw(0x6983) if self.adm_left == 0 else _sw(0x63C0 | self.adm_left)

    # -- for the control socket ----------------------------------------------------------
    def files(self) -> dict[str, str]:
        """Every EF's content as hex, by path ("3F00/7F20/6F07"); the key file only as written or not."""
        out: dict[str, str] = {}

        def walk(df: DF, path: str) -> None:
            for fid, node in df.children.items():
                p = f"{path}/{fid:04X}"
                if isinstance(node, DF):
                    walk(node, p)
                elif node.secret:
                    out[p] = "written" if any(node.data) else "blank"
                else:
                    out[p] = node.data.hex().upper()
        walk(self.mf, "3F00")
        walk(self.adf, "ADF.USIM")
        return out

    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "fail_next":  # {"ins": "D6", "sw": "6A82"}
            self.fail_next[int(str(args["ins"]), 16)] = int(str(args["sw"]), 16)
            return None
        if cmd == "stuck":  # {"fid": "6F46"}
            self.stuck.add(int(str(args["fid"]), 16))
            return None
        if cmd == "set_adm_tries":
            self.adm_left = int(args["tries"])
            return None
        raise ControlError(f"unknown command {cmd!r}")
