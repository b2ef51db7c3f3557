"""USIM personalisation without I/O: file encodings and the APDUs that write them (SIM notes §8).

Encodings follow pySim's algorithms (§8.2): ICCID and IMSI are BCD with swapped nibbles, the
IMSI led by its length and a parity nibble; SPN is a display byte and 16 characters of the GSM
default alphabet (ASCII letters and digits are the same code points), FF-padded.
"""
from __future__ import annotations

from dataclasses import dataclass

CLA = 0x00  # UICC (TS 102 221); a classic SIM would be A0
USIM_AID_PREFIX = bytes.fromhex("A0000000871002")  # §8.1, right-truncated: the card completes it
ADM1 = 0x0A  # §8.3: VERIFY P2 for ADM1 on sysmoUSIM and many programmable cards (vendor specific)

SW_TEXT = {
    0x9000: "ok",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6A82: "file not found",
    0x6A88: "referenced data not found",
    0x6700: "wrong length",
    0x6E00: "class not supported",
    0x6D00: "instruction not supported",
    0x6B00: "wrong parameters (offset)",
    0x6986: "no EF selected",
    0x6981: "command incompatible with file structure",
}


class UsimCodingError(ValueError):
    """A value that cannot be put on a card (wrong digits, too long)."""


def swap_nibbles(hexdigits: str) -> bytes:
    if len(hexdigits) % 2:
        raise UsimCodingError(f"{hexdigits!r}: odd number of nibbles")
    if any(c not in "0123456789abcdefABCDEF" for c in hexdigits):
        raise UsimCodingError(f"{hexdigits!r}: not hex digits")
    return bytes(int(hexdigits[i + 1] + hexdigits[i], 16) for i in range(0, len(hexdigits), 2))


def unswap(data: bytes) -> str:
    return "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in data)


def dec_iccid(data: bytes) -> str:
    return unswap(data).rstrip("f")


def enc_imsi(imsi: str) -> bytes:
    """§8.2: ``001010123456789`` -> 08 09 10 10 10 32 54 76 98."""
    if not (imsi.isascii() and imsi.isdigit()) or not 6 <= len(imsi) <= 15:
        raise UsimCodingError(f"IMSI {imsi!r}: 6-15 digits")
    odd = len(imsi) % 2
    length = (len(imsi) + 2) // 2
    nibbles = f"{(odd << 3) | 1:x}" + imsi
    nibbles += "f" * (16 - len(nibbles))
    return bytes([length]) + swap_nibbles(nibbles)


def dec_imsi(data: bytes) -> str:
    if len(data) != 9 or not 1 <= data[0] <= 8:
        raise UsimCodingError(f"EF.IMSI {data.hex()}: not an IMSI")
    nibbles = unswap(data[1: 1 + data[0]])
    return nibbles[1:].rstrip("f")


def enc_spn(name: str, show_in_hplmn: bool = True) -> bytes:
    """§8.1 EF.SPN: byte 1 display condition (b0: show in the home network), 16 bytes name, FF-padded."""
    if not name.isascii() or len(name) > 16 or any(not (c.isalnum() or c in " -.") for c in name):
        raise UsimCodingError(f"SPN {name!r}: up to 16 letters, digits, space, '-' or '.'")
    return bytes([0x01 if show_in_hplmn else 0x00]) + name.encode() + b"\xff" * (16 - len(name))


def enc_ad(mnc_len: int) -> bytes:
    """§8.1 EF.AD: normal operation (00 00 00), byte 4 low nibble = MNC length."""
    if mnc_len not in (2, 3):
        raise UsimCodingError(f"MNC length {mnc_len}: 2 or 3")
    return bytes([0x00, 0x00, 0x00, mnc_len])


def enc_acc(imsi: str) -> bytes:
    """Access control class 0-9 from the IMSI's last digit (TS 22.011 §4.2; as pySim derives it)."""
    return (1 << int(imsi[-1])).to_bytes(2, "big")


def enc_plmn(mcc: str, mnc: str) -> bytes:
    """§8.2: MCC2 MCC1 | MNC3 MCC3 | MNC2 MNC1; 460/00 -> 64 F0 00."""
    m3 = mnc[2] if len(mnc) == 3 else "f"
    return swap_nibbles(mcc[0] + mcc[1] + mcc[2] + m3 + mnc[0] + mnc[1])


def loci_reset(mcc: str, mnc: str) -> bytes:
    """EF.LOCI as a fresh card has it: no TMSI, the home LAI with LAC 0000 deleted (FFFE), not updated."""
    return b"\xff\xff\xff\xff" + enc_plmn(mcc, mnc) + b"\xff\xfe" + b"\xff" + b"\x01"


@dataclass(frozen=True)
class SimProfile:
    """What the BOSS hands out for one number: the subscriber's identity on the card and its keys."""

    imsi: str
    ki: str  # 32 hex
    opc: str  # 32 hex
    spn: str = "KIOSK"
    mnc_len: int = 2

    def __repr__(self) -> str:  # keys never reach a log line
        return f"SimProfile(imsi={self.imsi[:5]}*****{self.imsi[-2:]}, spn={self.spn!r})"

    def files(self) -> dict[str, bytes]:
        """EF path (from MF; ADF.USIM by AID) -> content, in the order they are written."""
        mcc, mnc = self.imsi[:3], self.imsi[3: 3 + self.mnc_len]
        keys = bytes.fromhex(self.ki) + bytes.fromhex(self.opc)
        if len(keys) != 32:
            raise UsimCodingError("Ki and OPc are 16 bytes each")
        out: dict[str, bytes] = {}
        for df in ("7F20", "ADF"):
            out[f"{df}/6F07"] = enc_imsi(self.imsi)
            out[f"{df}/6FAD"] = enc_ad(self.mnc_len)
            out[f"{df}/6F46"] = enc_spn(self.spn)
            out[f"{df}/6F78"] = enc_acc(self.imsi)
            out[f"{df}/6F7E"] = loci_reset(mcc, mnc)
        out["7FF0/FF02"] = keys  # vendor key file (card specific; see docs/identity.md)
        return out


def apdu(ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> list[int]:
    out = [CLA, ins, p1, p2]
    if data:
        out += [len(data), *data]
    if le is not None:
        out.append(le)
    return out


def select_path(path: bytes) -> list[int]:
    """SELECT by path from MF (P1 08), no FCP wanted (P2 0C)."""
    return apdu(0xA4, 0x08, 0x0C, path)


def select_aid(aid: bytes) -> list[int]:
    return apdu(0xA4, 0x04, 0x0C, aid)


def verify_adm(code: bytes | None, p2: int = ADM1) -> list[int]:
    """With ``code`` None: ask the retry counter (answer 63Cx) without spending a try."""
    return apdu(0x20, 0x00, p2, code or b"")


def read_binary(length: int, offset: int = 0) -> list[int]:
    return apdu(0xB0, offset >> 8, offset & 0xFF, le=length & 0xFF)


def update_binary(data: bytes, offset: int = 0) -> list[int]:
    return apdu(0xD6, offset >> 8, offset & 0xFF, data)


def adm_code(text: str) -> bytes:
    """§8.2: 8 ASCII characters (F-padded) or exactly 16 hex digits."""
    if len(text) == 16 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    if len(text) <= 8 and text.isascii():
        return text.encode() + b"\xff" * (8 - len(text))
    raise UsimCodingError("ADM: up to 8 ASCII characters or 16 hex digits")
