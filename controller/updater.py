"""A/B updates on the kiosk: the hall's `update` command in, the other root slot written, one try.

Why it lives in kioskd: only kioskd knows whether a customer is in flight or money is in the
machine, and only kioskd can say it is healthy to the hall. Each step is written to
STATE_DIR/update/state.json (fsync'd) and reported as an event before the next one starts, so a
power cut at any instant leaves a kiosk that boots its committed slot and says at its next start
what was interrupted.

    update {url, version, health_timeout_s}    (hall command; reply at once, work in the background)
    1 wait   until no customer is in flight and no transaction is open (money in escrow lives only
             inside an open transaction); then admission closes ("updating")
    2 write  the bundle streams from the hall into the other slot: signature checked on its first
             bytes (a bad one is refused before a byte is written), payload hashed as it goes
    3 try    tryboot.txt names the slot; kioskd exits UPDATE_EXIT and the image's unit reboots
             (ExecStopPost reboots on exit 76); the initrd boots the slot once (renaming tryboot.txt to trying.txt)
    4 commit on the new slot, once kioskd is up and the hall has acknowledged its `healthy` report:
             slot.txt = the new slot. Not in time: `python -m controller.updater guard` (root,
             kiosk-trial.service) notes why and reboots; the initrd boots the committed slot, whose
             kioskd reports `rolled_back` with the reason.
Boot files and bundle format: provisioning/updates.py. Walkthrough: docs/provisioning.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioning.updates import (CHUNK, HEAD_MAX, SLOTS, VERSION_RE, BootFiles, Header, SlotWriter, Trial,
                                  UpdateError, load_public, read_header, write_durably)

from .logs import fields

if TYPE_CHECKING:
    from .kiosk import Kiosk

log = logging.getLogger("kioskd.updater")

UPDATE_EXIT = 76  # "reboot into the other slot": the image's kioskd unit has RestartPreventExitStatus + an ExecStopPost reboot
HEALTH_TIMEOUT_S = (60, 3600)
DOWNLOAD_TIMEOUT_S = 3600.0
IDLE_POLL_S = 1.0
RELEASE_FILE = Path("/etc/kiosk/release")  # the slot's version, written by the image build


class Refused(Exception):
    """The update cannot start now; the text says why (the command's `refused` reply)."""


@dataclass(frozen=True)
class Slots:
    """Where the root slots are and which one is running."""

    devices: dict[str, Path]
    running: str

    @property
    def other(self) -> str:
        return SLOTS[1 - SLOTS.index(self.running)]


def mounts(mountinfo: str) -> dict[str, str]:
    """Mount point -> source from /proc/self/mountinfo (the last mount on a point wins)."""
    found = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        parts, rest = left.split(), right.split()
        if len(parts) >= 5 and len(rest) >= 2:
            found[parts[4]] = rest[1]
    return found


def slots_from_mounts(mountinfo: str, boot_dir: str) -> Slots | None:
    """The image's layout: partition 1 is the boot partition, 2 and 3 the root slots A and B
    (/dev/vda1 -> /dev/vda2, /dev/vda3; /dev/mmcblk0p1 -> /dev/mmcblk0p2, ...). None: not an A/B kiosk."""
    m = mounts(mountinfo)
    boot, root = m.get(boot_dir, ""), m.get("/", "")
    if not boot.startswith("/dev/") or not boot.endswith("1"):
        return None
    devices = {"A": Path(boot[:-1] + "2"), "B": Path(boot[:-1] + "3")}
    running = next((s for s, d in devices.items() if str(d) == root), None)
    return Slots(devices, running) if running else None


def find_slots(update: Any) -> Slots | None:
    if update.slot_a and update.slot_b and update.running:
        return Slots({"A": Path(update.slot_a), "B": Path(update.slot_b)}, update.running)
    try:
        return slots_from_mounts(Path("/proc/self/mountinfo").read_text(), update.boot_dir)
    except OSError:
        return None


def release() -> str:
    try:
        return RELEASE_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def check_args(args: dict[str, Any]) -> dict[str, Any]:
    """The `update` command's arguments: url (https or http: the signature is what is trusted),
    version (must equal the bundle's signed one), health_timeout_s (optional, 60..3600, default 600)."""
    from .commands import CommandError, shape

    shape({"url": str, "version": str}, {"health_timeout_s": int})(args)
    if not re.fullmatch(r"https?://[^\s]+", args["url"]):
        raise CommandError("bad_args", f"url: expected https://HOST[:PORT]/PATH, got {args['url']!r}")
    if not VERSION_RE.fullmatch(args["version"]):
        raise CommandError("bad_args", "version: letters, digits and . _ + ~ - (at most 64)")
    lo, hi = HEALTH_TIMEOUT_S
    if not lo <= args.setdefault("health_timeout_s", 600) <= hi:
        raise CommandError("bad_args", f"health_timeout_s: expected {lo}..{hi}")
    return args


class Updater:
    def __init__(self, kiosk: "Kiosk", state_dir: Path) -> None:
        self.kiosk = kiosk
        self.cfg = kiosk.config.update
        self.boot = BootFiles(Path(self.cfg.boot_dir))
        self.slots = find_slots(self.cfg)
        self.work = state_dir / "update"
        self.task: asyncio.Task | None = None
        self.version = release()

    # -- the journal of the update: state.json, and an event to the hall per step -------------------
    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.work / "state.json").read_text())
        except (OSError, ValueError):
            return {"step": "idle"}

    async def _step(self, step: str, detail: str, **data: Any) -> int:
        """Record the step (state.json, fsync'd) and queue its report for the hall; the outbox seq."""
        from transactions import records

        now = time.time()
        body = {"step": step, "detail": detail, "at": now, **data}
        self.work.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_durably, self.work / "state.json", json.dumps(body, sort_keys=True).encode())
        (log.warning if step in ("refused", "failed", "rolled_back", "interrupted") else log.info)(
            f"update {step}: {detail}", extra=fields(**data))
        event = {"kind": "update", "device": "updater", "code": step, "detail": detail, "data": data, "at": now}
        seq = await self.kiosk.require_journal().write(records.enqueue, "event", event, now)
        await self.kiosk.outbox_moved()
        return seq

    # -- the hall's command ------------------------------------------------------------------------
    async def announce(self, args: dict[str, Any]) -> dict[str, Any]:
        """Accept (and start in the background) or refuse an update, at once."""
        why = self._refusal(args)
        if why:
            await self._step("refused", why, version=args["version"], url=args["url"])
            raise Refused(why)
        assert self.slots is not None
        target = self.slots.other
        await self._step("accepted", f"{args['version']} for slot {target}; installs when no customer is in flight",
                         version=args["version"], url=args["url"], slot=target, running=self.version)
        self.task = asyncio.get_running_loop().create_task(
            self._install(args["url"], args["version"], target, args["health_timeout_s"]), name="update")
        return {"accepted": True, "slot": target, "version": args["version"], "running": self.version}

    def _refusal(self, args: dict[str, Any]) -> str | None:
        if not Path(self.cfg.public_key).exists():
            return f"no update key on this kiosk ({self.cfg.public_key}): updates come with a new image"
        if self.slots is None:
            return "not running from a root slot (A/B): updates come with a new image"
        if self.task is not None and not self.task.done():
            return "an update is already in progress"
        try:
            if self.boot.trying() is not None:
                return "a trial boot is not committed yet"
        except UpdateError as exc:
            return str(exc)
        if args["version"] == self.version:
            return f"version {self.version} is running already"
        return None

    # -- steps 1-3 ---------------------------------------------------------------------------------
    async def _until_idle(self) -> None:
        """No customer in flight, no open transaction; then admission closes in the same turn of the
        loop as the last look, so no customer can slip in between."""
        k = self.kiosk
        while True:
            open_txns = await k.require_journal().read(lambda conn: conn.execute(
                "SELECT COUNT(*) FROM transactions WHERE state = 'open'").fetchone()[0])
            busy = k.desk is not None and k.desk.screen()["busy"]
            if not open_txns and not busy and k.admission.in_flight == 0:
                k.admission.close("updating")
                k.offer_changed()
                return
            await asyncio.sleep(IDLE_POLL_S)

    async def _install(self, url: str, version: str, slot: str, timeout_s: int) -> None:
        k = self.kiosk
        assert self.slots is not None
        try:
            await self._step("waiting", "for no customer in flight and no money in the machine", version=version,
                             slot=slot)
            await self._until_idle()
            await self._step("installing", f"{version} into slot {slot} from {url}", version=version, slot=slot)
            header = await self._download(url, version, self.slots.devices[slot])
            self.boot.set_tryboot(Trial(slot, version, timeout_s))
            await self._step("installed", f"{version} in slot {slot} ({header.size} bytes, sha256 checked); "
                             f"rebooting to try it once, commit within {timeout_s} s", version=version, slot=slot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bad signature, damaged download, hall gone: the slot is never tried
            await self._step("refused" if "signature" in str(exc) else "failed", str(exc), version=version, slot=slot)
            if k.admission.closed_because == "updating":
                k.admission.open()
                k.offer_changed()
            return
        log.warning("rebooting into slot %s once", slot)
        k.exit_code = UPDATE_EXIT
        k.stop_requested.set()

    async def _download(self, url: str, version: str, device: Path) -> Header:
        import ssl

        import aiohttp

        public = load_public(Path(self.cfg.public_key))
        ca = self.kiosk.config.mqtt.ca_file
        ctx = ssl.create_default_context(cafile=ca or None) if url.startswith("https:") else None
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, ssl=ctx) as r:
            if r.status != 200:
                raise UpdateError(f"{url}: HTTP {r.status}")
            head = b""
            while len(head) < HEAD_MAX and (chunk := await r.content.read(HEAD_MAX - len(head))):
                head += chunk
            header = read_header(head, public, url)  # nothing is written before the signature checks out
            if header.version != version:
                raise UpdateError(f"the bundle is version {header.version}, the hall announced {version}")
            size = await asyncio.to_thread(_device_size, device)
            writer = await asyncio.to_thread(SlotWriter, header, device, 0, size)
            try:
                pending = head[header.offset:]
                while True:
                    if pending:
                        await asyncio.to_thread(writer.write, pending)
                    pending = await r.content.read(CHUNK)
                    if not pending:
                        break
            except BaseException:
                writer.close()
                raise
            await asyncio.to_thread(writer.finish)
            return header

    # -- step 4, and what a start finds -------------------------------------------------------------
    def start(self) -> None:
        """At kioskd's start, after the journal and the link: finish or report what an earlier boot began."""
        if self.slots is None:
            return
        self.task = asyncio.get_running_loop().create_task(self._resume(), name="update-resume")

    async def _resume(self) -> None:
        assert self.slots is not None
        running = self.slots.running
        try:
            trial, tryboot = self.boot.trying(), self.boot.tryboot()
        except UpdateError as exc:
            await self._step("failed", f"boot files: {exc}")
            return
        before = self.state()
        if trial is not None and trial.slot == running:
            if self.boot.committed() == running:  # power cut between slot.txt and removing trying.txt
                self.boot.end_trial()
                await self._step("committed", f"{trial.version} in slot {running}", version=trial.version,
                                 slot=running)
            else:
                await self._commit_when_healthy(trial)
        elif trial is not None:
            why = "; ".join(trial.notes) or (f"slot {trial.slot} did not come up; the boot after it went to slot "
                                             f"{running}")
            self.boot.end_trial()
            await self._step("rolled_back", f"from {trial.version} in slot {trial.slot} to {self.version} in slot "
                             f"{running}: {why}", version=trial.version, slot=trial.slot, running=self.version)
        elif tryboot is not None and before.get("step") == "installed":  # the reboot did not happen
            log.warning("update installed but not tried yet: rebooting into slot %s", tryboot.slot)
            self.kiosk.exit_code = UPDATE_EXIT
            self.kiosk.stop_requested.set()
        elif before.get("step") in ("accepted", "waiting", "installing"):
            self.boot.end_trial()
            (self.boot.dir / "tryboot.txt").unlink(missing_ok=True)
            await self._step("interrupted", f"the install of {before.get('version')} stopped at '{before['step']}' "
                             "(power cut or restart); that slot will not be tried", version=before.get("version"),
                             slot=before.get("slot"))

    async def _commit_when_healthy(self, trial: Trial) -> None:
        """Healthy = kioskd up (ready or degraded: a device fault is the hardware's, not the release's)
        and the hall has committed our `healthy` report to its database (its ack covers the row)."""
        k = self.kiosk
        await self._step("trial", f"booted {trial.version} in slot {trial.slot} once; commits when the hall has "
                         "our healthy report", version=trial.version, slot=trial.slot)
        while k.state not in ("ready", "degraded") or k.link is None or not k.link.connected.is_set():
            await asyncio.sleep(IDLE_POLL_S)
        seq = await self._step("healthy", f"{trial.version} in slot {trial.slot}: kioskd {k.state}, hall link up",
                               version=trial.version, slot=trial.slot, devices=k.devices.status() if k.devices else {})
        while k.outbox is None or k.outbox.acked < seq:
            await asyncio.sleep(IDLE_POLL_S)
        await asyncio.to_thread(self.boot.commit, trial.slot)
        await self._step("committed", f"{trial.version} in slot {trial.slot}", version=trial.version, slot=trial.slot)


def _device_size(path: Path) -> int:
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


# -- the trial guard (root, kiosk-trial.service) ------------------------------------------------------

def guard(boot_dir: Path, mountinfo: str, uptime_s: float, sleep=time.sleep, reboot=None) -> str:
    """On a trial boot: wait until TIMEOUT_S after boot; still not committed -> note why, reboot.
    Returns what it did (for its log)."""
    boot = BootFiles(boot_dir)
    trial = boot.trying()
    slots = slots_from_mounts(mountinfo, str(boot_dir))
    if trial is None or slots is None or slots.running != trial.slot:
        return "not a trial boot"
    sleep(max(0.0, trial.timeout_s - uptime_s))
    if boot.trying() is None:
        return f"{trial.version} in slot {trial.slot} committed in time"
    boot.note(f"no healthy report acknowledged by the hall within {trial.timeout_s} s of boot ({_kioskd_state()})")
    (reboot or _reboot)()
    return f"{trial.version} in slot {trial.slot} not committed in {trial.timeout_s} s: rebooting to the committed slot"


def _kioskd_state() -> str:
    """systemd's word on kioskd (running? restarting? its last status line), for the hall."""
    try:
        out = subprocess.run(["systemctl", "show", "kioskd.service", "-p", "ActiveState", "-p", "Result", "-p",
                              "NRestarts", "-p", "ExecMainStatus", "-p", "StatusText"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kioskd: state unknown ({exc})"
    said = ", ".join(line for line in out.stdout.splitlines() if line.strip())
    return f"kioskd: {said}" if out.returncode == 0 and said else "kioskd: state unknown"


def _reboot() -> None:
    subprocess.run(["systemctl", "reboot"], check=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["guard"]:
        print("usage: python -m controller.updater guard [BOOT_DIR]", file=sys.stderr)
        return 2
    boot_dir = Path(argv[1] if len(argv) > 1 else "/boot/firmware")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    print(guard(boot_dir, Path("/proc/self/mountinfo").read_text(), uptime), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
