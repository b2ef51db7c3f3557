"""ESC/POS receipt printer over a ByteLink (serial, USB-serial, tcp://host:9100, sim:escpos).

The printer is the one device whose failure the customer does not see at once: a job written
into a printer without paper vanishes. So the status is asked before and after every job and a
job is reported printed only when both answers are good. Status questions follow the traps in
shared/test-environment.md: stale input is thrown away first, each DLE EOT must be answered by
exactly one byte of the right pattern within a short time, and silence means "unknown", never
"paper OK".
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from hal.device import DeviceContext, DeviceError, Health
from hal.peripherals import Printer, PrinterStatus, PrintFailed, Receipt
from hal.protocols import escpos
from hal.transport import ByteLink, LinkClosed, open_link

from .layout import encode_job, layout

QUIET = 0.05  # s of silence that shows a late answer has stopped trickling in


@dataclass(frozen=True)
class EscPosOptions:
    port: str
    baudrate: int = 9600
    encoding: str = "gb18030"  # "gbk" for printers without 4-byte GB18030 support
    codepage: int = -1  # ESC t n before the job; -1 = leave the printer's default
    chinese_mode: bool = True  # FS & (True) or FS . (False) at the start of every job
    paper_width_chars: int = 32  # 58 mm: 32, 80 mm: 48 (font A, ASCII columns)
    timeout: float = 0.5  # s to wait for each real-time status byte
    line_time: float = 0.0  # s the mechanism needs per printed line, waited before the check after a job


class EscPosPrinter(Printer):
    Options: ClassVar[type] = EscPosOptions

    def __init__(self, name: str, options: EscPosOptions, ctx: DeviceContext) -> None:
        super().__init__(name, options, ctx)
        self.link: ByteLink | None = None
        self._lock = asyncio.Lock()
        self._dirty = False  # a question went unanswered or half-answered: a late byte may come
        self._last: PrinterStatus | None = None
        self._reported: set[str] = set()
        self.printed = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.link = await open_link(
                self.options.port, baudrate=self.options.baudrate, sim_ports=self.ctx.sim_ports
            )
        except (OSError, ValueError) as exc:
            self.set_health(Health.FAULT, f"cannot open {self.options.port}: {exc}")
            raise DeviceError(f"{self.name}: cannot open {self.options.port}: {exc}") from exc
        await self.status()

    async def stop(self) -> None:
        if self.link is not None:
            try:
                await self.link.close()
            except Exception:  # noqa: BLE001 — stop must not raise
                pass
            self.link = None

    async def safe_state(self) -> None:
        """A printer moves nothing dangerous; an unfinished job is simply not sent further."""

    async def self_test(self) -> str:
        when = datetime.now()
        receipt = Receipt(
            title="打印机自检 Printer test",
            lines=[
                ("设备 Device", self.name),
                ("端口 Port", self.options.port),
                ("编码 Encoding", self.options.encoding),
                ("宽度 Width", f"{self.options.paper_width_chars}"),
                ("时间 Time", when.strftime("%Y-%m-%d %H:%M:%S")),
                ("中文 Chinese", "中文打印正常"),
            ],
            qr="kioskd printer self test",
            footer="自检完成 Self test done",
        )
        await self.print_receipt(receipt)  # PrintFailed: the test failed (kioskctl exits 1)
        near = " (paper near end)" if self._last and self._last.paper_near_end else ""
        return f"{self.name}: test receipt printed{near}"

    async def identify(self) -> dict[str, str]:
        """Maker, model, firmware and serial number as the printer tells them (GS I 65..68); a
        printer that does not answer one leaves it out. For the rig report and kioskctl, not for printing."""
        found: dict[str, str] = {}
        async with self._lock:
            link = self.link
            if link is None:
                return found
            for key, n in escpos.PRINTER_INFO.items():
                await self._settle(link)
                link.write(escpos.info_query(n))
                answer = b""
                try:
                    while (text := escpos.parse_info_block(answer)) is None:
                        chunk = await link.read(self.options.timeout)
                        if not chunk:
                            self._dirty = bool(answer)
                            break
                        answer += chunk
                except (escpos.StatusReplyError, LinkClosed):
                    self._dirty = True
                    continue
                if text is not None:
                    found[key] = text
        return found

    # -- status ----------------------------------------------------------------------------
    async def status(self) -> PrinterStatus:
        async with self._lock:
            return await self._status()

    async def _status(self, first_wait: float | None = None) -> PrinterStatus:
        replies: dict[int, int] = {}
        for n in (1, 2, 3, 4):
            wait = first_wait if (n == 1 and first_wait) else self.options.timeout
            byte = await self._ask(n, wait)
            if byte is None:
                break
            replies[n] = byte
        status = escpos.decode_status(replies)
        self._note(status, replies)
        return status

    async def _ask(self, n: int, wait: float) -> int | None:
        """One DLE EOT n, one byte back; two tries, so one line glitch does not fail a print."""
        link = self.link
        if link is None:
            return None
        for _ in range(2):
            try:
                await self._settle(link)
                link.write(escpos.status_query(n))
                answer = await link.read(wait, max_bytes=16)
            except LinkClosed:
                return None
            if not answer:
                self._dirty = True  # it may still come, and must not answer the next question
                return None
            if link.pending:
                answer += link.discard_input()
            try:
                return escpos.parse_status_reply(answer)
            except escpos.StatusReplyError as exc:
                self._dirty = True
                self._fault("status_garbage", f"DLE EOT {n}: {exc}")
        return None

    async def _settle(self, link: ByteLink) -> None:
        """Throw stale input away; after a missed answer also wait until the line is quiet."""
        link.discard_input()
        while self._dirty:
            if not await link.read(QUIET):
                self._dirty = False

    def _note(self, status: PrinterStatus, replies: dict[int, int]) -> None:
        """Health from the status, and one event per condition when it begins."""
        self._last = status
        now: set[str] = set()
        if not status.known:
            now.add("silent")
            self._event("silent", "fault", "printer_silent", "no answer to DLE EOT")
            self.set_health(Health.FAULT, "printer does not answer status requests")
            self._reported &= now
            return
        self._reported.discard("silent")
        for flag, kind, code, text in (
            (status.paper_out, "paper_out", "paper_out", "paper end sensor"),
            (status.paper_near_end and not status.paper_out, "paper_low", "paper_near_end", "near-end sensor"),
            (status.cover_open, "cover_open", "cover_open", "cover open"),
            (status.cutter_error, "fault", "cutter_error", "autocutter error"),
            (escpos.unrecoverable(replies), "fault", "unrecoverable_error", "needs a technician"),
            (not status.online and not (status.paper_out or status.cover_open), "fault", "offline", "offline"),
        ):
            if flag:
                now.add(code)
                self._event(code, kind, code, text)
        self._reported &= now
        if not status.can_print:
            self.set_health(Health.FAULT, ", ".join(sorted(now)) or "cannot print")
        elif status.paper_near_end:
            self.set_health(Health.DEGRADED, "paper near end")
        else:
            self.set_health(Health.OK)

    def _event(self, key: str, kind: str, code: str, detail: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.report(kind, code, detail)

    def _fault(self, code: str, detail: str) -> None:
        self.report("fault", code, detail)

    # -- printing --------------------------------------------------------------------------
    def render(self, receipt: Receipt) -> bytes:
        """The job's bytes (also what tests and the example script compare against)."""
        o = self.options
        return encode_job(
            layout(receipt, o.paper_width_chars),
            encoding=o.encoding,
            chinese_mode=o.chinese_mode,
            codepage=o.codepage,
        )

    async def print_receipt(self, receipt: Receipt) -> None:
        o = self.options
        blocks = layout(receipt, o.paper_width_chars)
        job = encode_job(blocks, encoding=o.encoding, chinese_mode=o.chinese_mode, codepage=o.codepage)
        async with self._lock:
            before = await self._status()
            if not before.can_print:
                raise self._failed("not printed", before)
            if self.link is None:
                raise self._failed("not printed", PrinterStatus(known=False))
            try:
                self.link.write(job)
            except LinkClosed as exc:
                raise self._failed("link lost while sending", PrinterStatus(known=False)) from exc
            # The answer to the next question queues behind the job on a serial line (10 bits a
            # byte), and a real mechanism needs time per line before it can have failed.
            mechanism = o.line_time * len(blocks)
            await asyncio.sleep(mechanism)
            transmit = len(job) * 10 / max(o.baudrate, 1) if not o.port.startswith("tcp://") else 0.0
            after = await self._status(first_wait=o.timeout + transmit)
            if not after.can_print:
                raise self._failed("print not confirmed", after)
        self.printed += 1

    def _failed(self, what: str, status: PrinterStatus) -> PrintFailed:
        reason = describe(status)
        self._fault("print_failed", f"{what}: {reason}")
        return PrintFailed(f"{self.name}: {what}: {reason}")


def describe(status: PrinterStatus) -> str:
    """Why a printer cannot print, in words for the journal and a technician."""
    if not status.known:
        return "printer silent (status unknown)"
    why = [
        text
        for flag, text in (
            (status.paper_out, "paper out"),
            (status.cover_open, "cover open"),
            (status.cutter_error, "cutter error"),
            (not status.online, "offline"),
        )
        if flag
    ]
    return ", ".join(why) or "ready"
