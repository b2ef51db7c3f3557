"""GSM modem driver: SMS in PDU mode (Chinese as UCS2) and signal/registration for telemetry.

The modem is the kiosk's fallback messenger (refund claim codes, alarms when the hall link is
down), so a send either returns the message references or raises SmsFailed with a named
reason; a silent or babbling modem is a fault event, never a crash.

Retry policy (27.005 §3.2.5 codes, notes §6.4): network-side and momentary conditions are
retried with exponential backoff; anything about the number, the subscription, the SIM or the
PDU itself is permanent and given up at once (retrying would only repeat the refusal).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import ClassVar

from .device import DeviceError, Health
from .peripherals import Modem, SmsFailed
from .protocols.at import AtCodec, Final, Noise, Prompt, Response, Urc, csq_to_dbm, parse_fields, registered
from .protocols.sms_pdu import PduError, encode_sms
from .transport import LinkClosed, open_link

log = logging.getLogger(__name__)

# +CMS ERROR codes worth another try (notes §6.4): network failure 17, congestion 22/42, network
# out of order 38, temporary failure 41, resources unavailable 47, ME failure 300, SIM busy 314,
# no network service 331, network timeout 332, unknown error 500.
TRANSIENT_CMS = frozenset({17, 22, 38, 41, 42, 47, 300, 314, 331, 332, 500})
# Named permanent ones (everything not transient is permanent, these get a readable name).
PERMANENT_CMS = {
    1: "unassigned_number", 8: "operator_barring", 10: "call_barred", 21: "sm_transfer_rejected",
    27: "destination_out_of_service", 28: "unidentified_subscriber", 29: "facility_rejected",
    30: "unknown_subscriber", 50: "facility_not_subscribed", 69: "not_implemented",
    95: "invalid_message", 96: "invalid_mandatory_info", 111: "protocol_error",
    302: "operation_not_allowed", 303: "operation_not_supported", 304: "invalid_pdu_parameter",
    310: "sim_not_inserted", 311: "sim_pin_required", 313: "sim_failure", 316: "sim_puk_required",
    330: "smsc_address_unknown",
}


class SmsError(SmsFailed):
    """SmsFailed with a machine-readable ``code`` and the references of parts already sent."""

    def __init__(self, code: str, detail: str = "", refs: list[int] | None = None, cms: int | None = None):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.refs = refs or []
        self.cms = cms


class _NoAnswer(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # "silent" or "garbage"


@dataclass(frozen=True)
class GsmModemOptions:
    """kiosk.toml keys of a ``driver = \"gsm-modem\"`` section."""

    port: str = "/dev/ttyUSB2"  # SIM7600/EC20 AT port is usually the 3rd USB interface
    baudrate: int = 115200
    validity_vp: int = 0xAA  # TP-VP relative (0xAA = 4 days); -1 = no validity period
    charset: str = ""  # AT+CSCS value to send at init ("" = none: PDU mode ignores it)
    retries: int = 3  # extra attempts per part on transient errors
    backoff_s: float = 2.0  # first retry delay, doubled each time
    command_timeout_s: float = 2.0
    prompt_timeout_s: float = 5.0
    result_timeout_s: float = 60.0  # notes §6.1: allow >= 60 s on bad networks


class GsmModem(Modem):
    Options: ClassVar[type] = GsmModemOptions

    def __init__(self, name, options, ctx) -> None:
        super().__init__(name, options, ctx)
        self.link = None
        self.codec = AtCodec()
        self._lock = asyncio.Lock()
        self._concat_ref = 0
        self.urcs: list[str] = []
        self.noise_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.link = await open_link(self.options.port, baudrate=self.options.baudrate, sim_ports=self.ctx.sim_ports)
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.name}: cannot open {self.options.port}: {exc}") from exc
        try:
            async with self._lock:
                await self._init()
            self.set_health(Health.OK)
        except (_NoAnswer, SmsError) as exc:
            self._fault(getattr(exc, "code", "init_failed"), f"init: {exc}")

    async def _init(self, attempts: int = 3) -> None:
        """Sync (a stale prompt is aborted with ESC), echo off, numeric errors, PDU mode (§6.1)."""
        self.link.write(b"\x1b")
        self.link.discard_input()
        final = None
        for _ in range(attempts):
            try:
                final = await self._command("AT", self.options.command_timeout_s)
                break
            except _NoAnswer:
                continue
        if final is None:
            raise _NoAnswer("silent")
        for cmd in ("ATE0", "AT+CMEE=1", "AT+CMGF=0") + ((f'AT+CSCS="{self.options.charset}"',) if self.options.charset else ()):
            final, _ = await self._command_lines(cmd, self.options.command_timeout_s)
            if not final.ok:
                raise SmsError("init_failed", f"{cmd} -> {final.kind} {final.code or ''}".strip())

    async def stop(self) -> None:
        try:
            await self.safe_state()
        finally:
            if self.link is not None:
                await self.link.close()
                self.link = None

    async def safe_state(self) -> None:
        """Nothing physical to switch off; abort a half-sent PDU so the modem is not left waiting."""
        if self.link is not None and not self.link.closed:
            try:
                self.link.write(b"\x1b")
            except LinkClosed:
                pass

    async def self_test(self) -> str:
        sig = await self.signal()
        if sig.get("fault"):
            return f"{self.name}: FAULT {sig['fault']}"
        return f"{self.name}: registered={sig['registered']} rssi={sig['rssi_dbm']} dBm"

    # -- exchanges ---------------------------------------------------------------------
    async def _read_until(self, want, timeout: float):
        """Feed the codec until ``want(event)`` is true; URCs and noise are set aside."""
        saw_noise = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        collected: list = []
        while True:
            for ev in self.codec.events():
                if isinstance(ev, Urc):
                    self.urcs.append(ev.text)
                    del self.urcs[:-50]
                elif isinstance(ev, Noise):
                    saw_noise = True
                    self.noise_bytes += len(ev.data)
                else:
                    collected.append(ev)
                    if want(ev):
                        return collected
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.codec.abandon()
                raise _NoAnswer("garbage" if saw_noise or collected else "silent")
            try:
                chunk = await self.link.read(remaining)
            except LinkClosed:
                raise _NoAnswer("link_closed") from None
            if chunk:
                self.codec.feed(chunk)

    def _drain_stale(self) -> None:
        """Bytes nobody asked for: keep their URCs, drop late answers so they answer nothing."""
        stale = self.link.discard_input()
        if stale:
            self.codec.abandon()
            self.codec.feed(stale)
        for ev in self.codec.events():
            if isinstance(ev, Urc):
                self.urcs.append(ev.text)

    async def _command_lines(self, cmd: str, timeout: float) -> tuple[Final, list[str]]:
        if self.link is None:
            raise _NoAnswer("silent")
        self._drain_stale()
        self.link.write(self.codec.command(cmd))
        events = await self._read_until(lambda ev: isinstance(ev, Final), timeout)
        lines = [ev.text for ev in events if isinstance(ev, Response)]
        return events[-1], lines

    async def _command(self, cmd: str, timeout: float) -> Final:
        final, _ = await self._command_lines(cmd, timeout)
        return final

    # -- SMS ---------------------------------------------------------------------------
    async def send_sms(self, number: str, text: str) -> list[int]:
        """Send ``text`` in as many parts as it needs; returns each part's TP-MR (+CMGS: <mr>)."""
        self._concat_ref = (self._concat_ref + 1) % 256
        vp = self.options.validity_vp if self.options.validity_vp >= 0 else None
        try:
            pdus = encode_sms(number, text, concat_ref=self._concat_ref, validity=vp)
        except PduError as exc:
            raise SmsError("bad_request", str(exc)) from None
        refs: list[int] = []
        async with self._lock:
            for index, pdu in enumerate(pdus, start=1):
                try:
                    refs.append(await self._send_part(pdu))
                except SmsError as exc:
                    exc.refs = list(refs)
                    self.report("sms_failed", exc.code, f"part {index}/{len(pdus)} to {_mask(number)}: {exc}")
                    raise
        if self.health != Health.OK:
            self.set_health(Health.OK)
        return refs

    async def _send_part(self, pdu) -> int:
        delay = self.options.backoff_s
        last: SmsError | None = None
        for attempt in range(self.options.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                return await self._cmgs(pdu)
            except _NoAnswer as exc:
                last = SmsError(exc.code, "no answer to AT+CMGS")
                self._fault(exc.code, "modem did not answer AT+CMGS")
                if not await self._recover():
                    raise last from None  # still dead: do not hold the customer for every retry
            except SmsError as exc:
                if exc.cms is not None and exc.cms not in TRANSIENT_CMS:
                    raise
                last = exc
            log.info("%s: transient SMS failure (%s), retry %d", self.name, last, attempt + 1)
        assert last is not None
        raise last

    async def _cmgs(self, pdu) -> int:
        if self.link is None:
            raise _NoAnswer("silent")
        self._drain_stale()
        self.link.write(self.codec.command(f"AT+CMGS={pdu.tpdu_length}"))
        events = await self._read_until(lambda ev: isinstance(ev, (Prompt, Final)), self.options.prompt_timeout_s)
        if isinstance(events[-1], Final):
            raise _final_error(events[-1])
        self.link.write(self.codec.pdu_body(pdu.hex))
        events = await self._read_until(lambda ev: isinstance(ev, Final), self.options.result_timeout_s)
        final = events[-1]
        if not final.ok:
            raise _final_error(final)
        for ev in events:
            if isinstance(ev, Response) and ev.text.upper().startswith("+CMGS:"):
                fields = parse_fields(ev.text)
                if fields and fields[0].isdigit():
                    return int(fields[0])
        raise SmsError("garbage", "OK without +CMGS: <mr>")

    async def _recover(self) -> bool:
        """After silence: abort any prompt and re-run the init; False if the modem stays silent."""
        try:
            await self._init(attempts=1)
            return True
        except (_NoAnswer, SmsError):
            return False

    # -- identity ----------------------------------------------------------------------
    async def identify(self) -> dict[str, str]:
        """What the modem says it is: ATI, and 27.007 §5 +CGMI maker, +CGMM model, +CGMR firmware
        revision, +CGSN IMEI; a command it refuses or ignores is left out (the rig report, kioskctl)."""
        found: dict[str, str] = {}
        async with self._lock:
            for key, cmd in (("ati", "ATI"), ("maker", "AT+CGMI"), ("model", "AT+CGMM"), ("firmware", "AT+CGMR"),
                             ("imei", "AT+CGSN")):
                try:
                    final, lines = await self._command_lines(cmd, self.options.command_timeout_s)
                except _NoAnswer:
                    continue
                if final.ok and lines:
                    found[key] = " ".join(line.strip() for line in lines)
        return found

    # -- telemetry ---------------------------------------------------------------------
    async def signal(self) -> dict:
        """{"registered", "rssi_dbm", "roaming"}; plus "fault" when the modem does not answer."""
        result: dict = {"registered": False, "rssi_dbm": None, "roaming": False}
        try:
            async with self._lock:
                final, lines = await self._command_lines("AT+CSQ", self.options.command_timeout_s)
                if final.ok and lines:
                    fields = parse_fields(lines[0])
                    if fields and fields[0].isdigit():
                        result["rssi_dbm"] = csq_to_dbm(int(fields[0]))
                for cmd in ("AT+CREG?", "AT+CEREG?"):  # 2G/3G circuit, then LTE (27.007 §7.2, §10.1.22)
                    final, lines = await self._command_lines(cmd, self.options.command_timeout_s)
                    if final.ok and lines:
                        fields = parse_fields(lines[0])
                        if len(fields) >= 2 and fields[1].isdigit() and registered(int(fields[1])):
                            result["registered"] = True
                            result["roaming"] = int(fields[1]) == 5
                            break
        except _NoAnswer as exc:
            self._fault(exc.code, "modem did not answer AT+CSQ/AT+CREG?")
            result["fault"] = exc.code
            return result
        if self.health == Health.FAULT:
            self.set_health(Health.OK)
        if not result["registered"] and self.health == Health.OK:
            self.set_health(Health.DEGRADED, "not registered")
        elif result["registered"] and self.health == Health.DEGRADED:
            self.set_health(Health.OK)
        return result

    def _fault(self, code: str, detail: str) -> None:
        if self.health != Health.FAULT:
            self.report("fault", code, f"{self.name}: {detail}")
        self.set_health(Health.FAULT, f"{code}: {detail}")


def _final_error(final: Final) -> SmsError:
    if final.kind == "CMS" and final.code is not None:
        name = PERMANENT_CMS.get(final.code) or ("transient" if final.code in TRANSIENT_CMS else "cms_error")
        return SmsError(name, f"+CMS ERROR: {final.code}", cms=final.code)
    if final.kind == "CMS":
        return SmsError("cms_error", f"+CMS ERROR: {final.text}", cms=500)
    # bare ERROR / +CME ERROR on CMGS: treat as the modem's unknown error (retried)
    return SmsError("modem_error", f"{final.kind} {final.text}".strip(), cms=500)


def _mask(number: str) -> str:
    """Logs keep only the last four digits of a customer's number."""
    return "*" * max(0, len(number) - 4) + number[-4:]
