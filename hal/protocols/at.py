"""AT command lines for a GSM modem (V.250 §5.7; 27.007 §9.2; 27.005 §3.2.5; notes §6.1).

Sans-I/O: ``command()`` turns a command into bytes, ``feed()`` takes whatever the modem sent
(any chunking) and ``events()`` yields what it meant:

  Response(text)   an information line belonging to the command in flight ("+CSQ: 20,99")
  Final(...)       the final result code ending it: OK, ERROR, +CMS ERROR: n, +CME ERROR: n, ...
  Prompt()         the "> " (0x3E 0x20, no CR/LF) after AT+CMGS=<n> asking for the PDU
  Urc(text)        an unsolicited result code (+CMTI, +CREG: 1, RING, ...) at any time
  Noise(data)      bytes that cannot be a line (a runaway line without CR/LF)

Echo of the command in flight (before ATE0 took effect) is dropped here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 1024  # a longer run without CR/LF is noise, not a response
CTRL_Z = b"\x1a"  # ends the PDU after the prompt (§6.1 step 4)
ESC = b"\x1b"  # aborts it

# V.250 §5.7.1 / 27.005 / 27.007 final result codes (numeric codes follow in +CMS/+CME)
_FINALS = ("OK", "ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "CONNECT")
_CODE_RE = re.compile(r"^\+(CMS|CME) ERROR:\s*(.*)$")
# Unsolicited result codes from 27.005 §3.4 / 27.007 §7-10 plus common vendor power-on lines
_URC_PREFIXES = (
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "+CBM:", "+CUSD:", "+CRING:", "RING", "+CLIP:",
    "+CIEV:", "+CGEV:", "+CPIN:", "RDY", "Call Ready", "SMS Ready", "+CFUN:", "^SYSSTART",
    "+QIND:", "*PSUTTZ:", "+CTZV:", "DST:", "+PACSP", "NORMAL POWER DOWN", "UNDER-VOLTAGE",
)


@dataclass(frozen=True)
class Response:
    text: str


@dataclass(frozen=True)
class Final:
    kind: str  # "OK", "ERROR", "CMS", "CME", "NO CARRIER", ...
    code: int | None = None  # the number after +CMS/+CME ERROR (None if verbose text)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "OK"


@dataclass(frozen=True)
class Prompt:
    pass


@dataclass(frozen=True)
class Urc:
    text: str


@dataclass(frozen=True)
class Noise:
    data: bytes


Event = Response | Final | Prompt | Urc | Noise


class AtCodec:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._events: list[Event] = []
        self.pending: str | None = None  # command in flight
        self._prefix: str | None = None  # "+CSQ" for "AT+CSQ"

    def command(self, cmd: str) -> bytes:
        """Bytes for ``cmd`` (e.g. "AT+CSQ"); its responses are told apart from URCs until Final."""
        if "\r" in cmd or "\n" in cmd:
            raise ValueError("one command per line")
        self.pending = cmd
        m = re.match(r"^AT([+^$*#%][A-Za-z0-9]+)", cmd, re.IGNORECASE)
        self._prefix = m.group(1).upper() if m else None
        return cmd.encode("ascii") + b"\r"

    @staticmethod
    def pdu_body(hex_pdu: str) -> bytes:
        """What goes after the prompt: the PDU as uppercase hex, then Ctrl-Z (§6.1 step 4)."""
        return hex_pdu.upper().encode("ascii") + CTRL_Z

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._parse()

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def abandon(self) -> None:
        """The command in flight timed out: later lines are no longer its answer."""
        self.pending = None
        self._prefix = None

    # ---------------------------------------------------------------------------------
    def _parse(self) -> None:
        while True:
            # Skip line terminators between lines (V.250: responses are framed <CR><LF>text<CR><LF>)
            while self._buf[:1] in (b"\r", b"\n"):
                del self._buf[:1]
            if not self._buf:
                return
            if self._buf[:2] == b"> ":
                # The CMGS prompt has no line end (§6.1 step 4); only meaningful while waiting for it.
                del self._buf[:2]
                self._events.append(Prompt())
                continue
            end = -1
            for i, b in enumerate(self._buf):
                if b in (0x0D, 0x0A):
                    end = i
                    break
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    self._events.append(Noise(bytes(self._buf)))
                    self._buf.clear()
                return
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if len(raw) > MAX_LINE:
                self._events.append(Noise(raw))
                continue
            self._line(raw.decode("ascii", errors="replace").strip())

    def _line(self, line: str) -> None:
        if not line:
            return
        if self.pending is not None and line == self.pending:
            return  # echo (ATE1)
        if line in _FINALS:
            self._final(Final(line))
            return
        m = _CODE_RE.match(line)
        if m:
            detail = m.group(2).strip()
            code = int(detail) if detail.isdigit() else None
            self._final(Final(m.group(1), code, detail))
            return
        upper = line.upper()
        if self.pending is not None and self._prefix and upper.startswith(self._prefix + ":"):
            self._events.append(Response(line))
        elif any(line.startswith(p) for p in _URC_PREFIXES) or self.pending is None:
            self._events.append(Urc(line))
        elif upper.startswith(("+CREG:", "+CEREG:", "+CGREG:")) and line.count(",") == 0:
            self._events.append(Urc(line))  # "+CREG: 1" with n=1 is the URC form (27.007 §7.2)
        else:
            self._events.append(Response(line))

    def _final(self, final: Final) -> None:
        self._events.append(final)
        self.pending = None
        self._prefix = None


def parse_fields(response: str) -> list[str]:
    """"+CSQ: 20,99" -> ["20", "99"]; quotes stripped."""
    _, _, rest = response.partition(":")
    return [f.strip().strip('"') for f in rest.split(",")] if rest.strip() else []


def csq_to_dbm(rssi: int) -> int | None:
    """27.007 §8.5: 0 = -113 dBm or less, 1 = -111, 2..30 = -109..-53 in 2 dB steps, 31 = -51 or more, 99 unknown."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    return None


def registered(stat: int) -> bool:
    """27.007 §7.2 <stat>: 1 registered home, 5 registered roaming (6/7 SMS-only variants in EPS)."""
    return stat in (1, 5, 6, 7)
