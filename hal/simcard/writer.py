"""SIM writing over PC/SC with pyscard: ADM once, the profile's files, everything read back.

Why the retry counter first: a wrong ADM key costs a try, and a card whose ADM is blocked can
never be personalised again. So the counter is read without spending a try (VERIFY with no
data, TS 102 221 §11.1.9), the write stops when it shows ``adm_floor`` or fewer tries (default:
stop with one try left), and a rejected key is never tried a second time.

pyscard blocks: every card conversation runs in one worker thread, never on the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..device import Health
from ..protocols import usim as u
from . import SimProfile, SimWriteFailed, SimWriter

log = logging.getLogger("hal.simcard")


class _Sw(Exception):
    def __init__(self, sw: int, what: str) -> None:
        super().__init__(f"{what}: {sw:04X} {u.SW_TEXT.get(sw, '')}".rstrip())
        self.sw = sw


def _release(conn: Any) -> None:
    """Disconnect and free the PC/SC context now, not in a destructor after pcscd has gone."""
    for step in ("disconnect", "release"):
        try:
            getattr(conn, step, lambda: None)()
        except Exception:  # noqa: BLE001 - the card or pcscd may be gone already
            pass


def _code_of(sw: int) -> str:
    return {0x6982: "security", 0x6983: "adm_blocked", 0x6A82: "file_not_found"}.get(sw, "card_error")


class PcscSimWriter(SimWriter):
    @dataclass(frozen=True)
    class Options:
        reader: str = ""  # part of the PC/SC reader name; "" = the first reader
        adm_p2: int = u.ADM1
        adm_floor: int = 1  # tries left at or below this: do not try (a blocked ADM bricks the card)
        timeout_s: float = 10.0
        card_wait_s: float = 3.0  # a card just moved to the contacts takes a moment to be seen
        simulate_port: int = 0  # --simulate: vpcd port of kioskd's private pcscd (0 = pick one)
        simulate_feeder: str = ""  # --simulate: the sim: dispenser whose stack feeds the reader ("crt571-sims")

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"pcsc-{name}")
        self.sim = None  # --simulate: the private pcscd and virtual card (hal.simcard.simulated)

    async def start(self) -> None:
        if self.ctx.simulate:
            from .simulated import SimulatedReader
            self.sim = SimulatedReader(self.ctx.runtime_dir, self.options.simulate_port)
            await self.sim.start()
            if self.options.simulate_feeder:  # each card leaving that stack is a fresh blank USIM here
                self.sim.follow(self.ctx.sim_ports, self.options.simulate_feeder)
        try:
            names = await self._in_thread(self._readers)
        except SimWriteFailed as exc:
            self.report("fault", exc.code, exc.detail)
            self.set_health(Health.FAULT, exc.detail)
            return
        self.set_health(Health.OK, ", ".join(names))

    async def stop(self) -> None:
        self._pool.shutdown(wait=True)
        if self.sim is not None:
            await self.sim.stop()

    async def self_test(self) -> str:
        try:
            return f"{self.name}: ok, card {await self.read_iccid()}"
        except SimWriteFailed as exc:
            return f"{self.name}: FAIL {exc.code} {exc.detail}"

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn, *args), self.options.timeout_s)
        except TimeoutError:
            raise SimWriteFailed("pcsc_gone", f"no answer from PC/SC in {self.options.timeout_s:g} s") from None

    # -- in the worker thread ------------------------------------------------------------
    def _readers(self) -> list[str]:
        from smartcard.Exceptions import SmartcardException
        from smartcard.System import readers
        try:
            found = [str(r) for r in readers()]
        except (SmartcardException, Exception) as exc:  # noqa: BLE001 - pyscard raises several kinds
            raise SimWriteFailed("pcsc_gone", f"PC/SC: {exc}") from None
        mine = [r for r in found if self.options.reader in r]
        if not mine:
            raise SimWriteFailed("pcsc_gone", f"no reader matching {self.options.reader!r} among {found}")
        return mine

    def _connect(self) -> Any:
        from smartcard.Exceptions import SmartcardException
        from smartcard.System import readers
        deadline = time.monotonic() + self.options.card_wait_s
        while True:
            try:
                reader = next((r for r in readers() if self.options.reader in str(r)), None)
            except Exception as exc:  # noqa: BLE001
                raise SimWriteFailed("pcsc_gone", f"PC/SC: {exc}") from None
            if reader is None:
                raise SimWriteFailed("pcsc_gone", f"no reader matching {self.options.reader!r}")
            conn = reader.createConnection()
            try:
                conn.connect()
                return conn
            except SmartcardException as exc:
                _release(conn)
                if time.monotonic() >= deadline:
                    raise SimWriteFailed("no_card", f"{reader}: {exc}") from None
            time.sleep(0.1)

    def _tx(self, conn: Any, apdu: list[int], what: str) -> tuple[bytes, int]:
        """One command; follows 61xx (GET RESPONSE) and 6Cxx (repeat with Le) as pySim does."""
        from smartcard.Exceptions import SmartcardException
        try:
            data, sw1, sw2 = conn.transmit(apdu)
            if sw1 == 0x6C:
                data, sw1, sw2 = conn.transmit(apdu[:4] + [sw2])
            while sw1 == 0x61:
                more, sw1, sw2 = conn.transmit([u.CLA, 0xC0, 0x00, 0x00, sw2])
                data += more
        except SmartcardException as exc:
            raise SimWriteFailed("pcsc_gone", f"{what}: {exc}") from None
        return bytes(data), sw1 << 8 | sw2

    def _ok(self, conn: Any, apdu: list[int], what: str) -> bytes:
        data, sw = self._tx(conn, apdu, what)
        if sw != 0x9000:
            raise _Sw(sw, what)
        return data

    def _select(self, conn: Any, path: str) -> None:
        df, _, ef = path.partition("/")
        if df == "ADF":
            self._ok(conn, u.select_aid(u.USIM_AID_PREFIX), "select ADF.USIM")
            self._ok(conn, u.apdu(0xA4, 0x00, 0x0C, bytes.fromhex(ef)), f"select {path}")
        else:
            self._ok(conn, u.select_path(bytes.fromhex(df + ef)), f"select {path}")

    def _read_iccid(self, conn: Any) -> str:
        self._ok(conn, u.select_path(bytes.fromhex("2FE2")), "select EF.ICCID")
        return u.dec_iccid(self._ok(conn, u.read_binary(10), "read EF.ICCID"))

    def _iccid_job(self) -> str:
        conn = self._connect()
        try:
            return self._read_iccid(conn)
        except _Sw as exc:
            raise SimWriteFailed(_code_of(exc.sw), str(exc)) from None
        finally:
            _release(conn)

    def _write_job(self, files: dict[str, bytes], adm: bytes) -> str:
        conn = self._connect()
        written = False
        try:
            iccid = self._read_iccid(conn)
            _, sw = self._tx(conn, u.verify_adm(None, self.options.adm_p2), "ADM retry counter")
            if sw == 0x6983:
                raise SimWriteFailed("adm_blocked", f"card {iccid}: ADM blocked")
            if sw & 0xFFF0 == 0x63C0:
                left = sw & 0x0F
                if left <= self.options.adm_floor:
                    raise SimWriteFailed("adm_low", f"card {iccid}: {left} ADM tries left, not trying")
            elif sw != 0x9000:
                raise SimWriteFailed(_code_of(sw), f"card {iccid}: ADM retry counter answered {sw:04X}")
            _, sw = self._tx(conn, u.verify_adm(adm, self.options.adm_p2), "verify ADM")
            if sw == 0x6983:
                raise SimWriteFailed("adm_blocked", f"card {iccid}: ADM blocked")
            if sw & 0xFFF0 == 0x63C0:
                raise SimWriteFailed("adm_rejected", f"card {iccid}: ADM key rejected, {sw & 0x0F} tries left")
            if sw != 0x9000:
                raise SimWriteFailed(_code_of(sw), f"card {iccid}: verify ADM answered {sw:04X}")
            for path, content in files.items():
                self._select(conn, path)
                written = True
                self._ok(conn, u.update_binary(content), f"update {path}")
            for path, content in files.items():
                self._select(conn, path)
                back = self._ok(conn, u.read_binary(len(content)), f"read back {path}")
                if back != content:
                    raise SimWriteFailed("verify_mismatch", f"card {iccid}: {path} reads back differently", True)
            return iccid
        except _Sw as exc:
            raise SimWriteFailed(_code_of(exc.sw), str(exc), written) from None
        except SimWriteFailed as exc:
            exc.written = exc.written or written
            raise
        finally:
            _release(conn)

    # -- SimWriter -----------------------------------------------------------------------
    async def read_iccid(self) -> str:
        return await self._in_thread(self._iccid_job)

    async def write(self, profile: SimProfile, adm: str) -> str:
        try:
            files = profile.files()
            code = u.adm_code(adm)
        except (u.UsimCodingError, ValueError) as exc:
            raise SimWriteFailed("bad_profile", str(exc)) from None
        try:
            iccid = await self._in_thread(self._write_job, files, code)
        except SimWriteFailed as exc:
            self.report("sim_write_failed", exc.code, exc.detail)
            if exc.code == "pcsc_gone":
                self.set_health(Health.FAULT, exc.detail)
            raise
        self.set_health(Health.OK)
        return iccid
