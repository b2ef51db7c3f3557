"""The real image: built ONCE per session (mmdebstrap arm64), personalised, booted under
qemu-system-aarch64 -M virt with its own kernel and initrd (-kernel/-initrd). systemd starts kioskd
--simulate from the read-only root; it enrols at the halld on the host (10.0.2.2 through qemu's
user network) and joins the hall's secure broker with its new certificate. Then:
- a customer tops up a phone on the kiosk (kioskd's local API, forwarded by the simulated image on
  TCP 7001) and the transaction reaches the hall's database;
- an update whose new root cannot run kioskd (a kiosk.toml it refuses) is installed into slot B,
  booted once, misses its health deadline, and the kiosk comes back on slot A and tells the hall why.
The update bundle is the built image's own root with two files changed (provisioning/bundle.py),
not a second bootstrap."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hall.broker import free_port
from hall.enrol import issue_token
from hall.mosquitto_secure import start_secure_broker
from provisioning import bundle
from provisioning.certs import mint_ca, mint_client, mint_server
from provisioning.disk import boot_slice, fat_list, fat_read
from provisioning.updates import keygen

from .conftest import tool
from .test_enrolment import accepts, wait_for

HOST = "10.0.2.2"  # the host as qemu's user network shows it to the guest
FLEET = {"H9": ["KQ1", "KQ2"]}
PHONE = "13800138000"  # an active bosssim account


@pytest.fixture(scope="session")
def update_key(tmp_path_factory) -> tuple[Path, Path]:
    return keygen(tmp_path_factory.mktemp("update-key"))


@pytest.fixture(scope="session")
def kiosk_image(tmp_path_factory, update_key) -> Path:
    d = tmp_path_factory.mktemp("image")
    out = d / "kiosk.img"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "image", "build", "--out", str(out), "--simulate",
                        "--release", "1.0", "--update-key", str(update_key[1])],
                       capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-4000:] + (d / "kiosk.work" / "build.log").read_text()[-4000:]
    print(f"image build: {time.monotonic() - t0:.0f} s; {r.stdout.strip()}")
    shutil.rmtree(d / "kiosk.work")  # 750 MB of root tree; the image and its kernel/initrd stay
    return out


def rows(db: Path, sql: str, *params) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        try:
            return c.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


@dataclass
class Hall:
    tmp: Path
    db: Path
    enrol_port: int
    broker_port: int
    api: str
    token: str
    ca: Path
    updates: Path


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    """The hall on the host: fleet CA, secure broker, bosssim, halld (enrolment, updates, API)."""
    tmp = tmp_path_factory.mktemp("hall")
    ca = mint_ca(tmp / "ca")
    server = mint_server(ca, tmp / "ca", ["localhost", "127.0.0.1", HOST])
    mint_client(ca, tmp / "ca", "halld")
    broker = start_secure_broker(tmp / "mosquitto", ca, server, FLEET)
    boss = subprocess.Popen([sys.executable, "-m", "bosssim", "--port", "0", "--db", str(tmp / "boss.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    said = boss.stdout.readline()
    assert re.search(r"http://[\d.]+:\d+", said), f"bosssim did not say where it listens: {said!r}"
    boss_url = re.search(r"http://[\d.]+:\d+", said).group(0)
    db, port, http = tmp / "hall.db", free_port(), free_port()
    updates = tmp / "updates"
    updates.mkdir()
    subprocess.run([sys.executable, "-m", "hall.halld", "user", "add", "tech", "--role", "operator", "--db", str(db),
                    "--password-stdin"], input="correct horse battery\n", text=True, check=True, capture_output=True)
    token = subprocess.run([sys.executable, "-m", "hall.halld", "user", "token", "tech", "--db", str(db)],
                           capture_output=True, text=True, check=True).stdout.split()[0]
    halld = subprocess.Popen(
        [sys.executable, "-m", "hall.halld", "serve", "--db", str(db), "--mqtt-host", "localhost",
         "--mqtt-port", str(broker.port), "--hall", "H9", "--http", f"127.0.0.1:{http}", "--ca", str(ca.cert_path),
         "--cert", str(tmp / "ca" / "halld.crt"), "--key", str(tmp / "ca" / "halld.key"), "--boss", boss_url,
         "--enrol", f"127.0.0.1:{port}", "--enrol-cert", str(server.cert_path), "--enrol-key",
         str(server.key_path), "--fleet-ca-dir", str(tmp / "ca"), "--updates-dir", str(updates)],
        stdout=open(tmp / "halld.log", "w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: halld.poll() is not None or (accepts(port) and accepts(http)), 60, "halld's ports")
        assert halld.poll() is None, (tmp / "halld.log").read_text()
        yield Hall(tmp, db, port, broker.port, f"http://127.0.0.1:{http}", token, ca.cert_path, updates)
    finally:
        halld.terminate()
        halld.wait(30)
        boss.terminate()
        boss.wait(10)
        broker.stop()


class Guest:
    """One kiosk under qemu: a sparse copy of the image, personalised; reboots stay in the same qemu."""

    def __init__(self, hall: Hall, image: Path, kiosk: str, tmp: Path) -> None:
        self.hall, self.kiosk, self.tmp = hall, kiosk, tmp
        self.img = tmp / "kiosk.img"
        subprocess.run(["cp", "--sparse=always", str(image), str(self.img)], check=True)
        token = issue_token(str(hall.db), kiosk, "H9")
        r = subprocess.run([sys.executable, "-m", "provisioning.cli", "personalise", str(self.img), "--kiosk", kiosk,
                            "--hall", "H9", "--enrol-url", f"https://{HOST}:{hall.enrol_port}/enrol", "--token", token,
                            "--ca", str(hall.ca), "--mqtt", f"{HOST}:{hall.broker_port}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        self.console = tmp / "console.log"
        self.api_port = free_port()
        self.qemu = subprocess.Popen(
            [tool("qemu-system-aarch64"), "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
             "-kernel", str(image.with_name("kiosk.vmlinuz")), "-initrd", str(image.with_name("kiosk.initrd")),
             "-append", "console=ttyAMA0 root=LABEL=rootA ro net.ifnames=0 panic=-1 "
                        "systemd.journald.forward_to_console=1 systemd.show_status=0",
             "-drive", f"file={self.img},format=raw,if=virtio",
             "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.api_port}-:7001",
             "-device", "virtio-net-pci,netdev=n0", "-display", "none", "-monitor", "none",
             "-serial", f"file:{self.console}"])
        self.started = time.monotonic()

    def tail_all(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def tail(self) -> str:
        return self.console.read_text(errors="replace")[-6000:] if self.console.exists() else "(no console)"

    def wait(self, predicate, timeout: float, what: str) -> None:
        wait_for(lambda: self.qemu.poll() is not None or predicate(), timeout, f"{what} (console: {self.console})")
        assert self.qemu.poll() is None, self.tail()

    def online(self) -> bool:
        return bool(rows(self.hall.db, "SELECT 1 FROM fleet WHERE kiosk = ? AND online = 1", self.kiosk))

    def api(self, cmd: str, **args) -> object:
        """kioskd's local API (JSON lines) through the image's TCP forward."""
        with socket.create_connection(("127.0.0.1", self.api_port), timeout=30) as s:
            s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(f"{cmd}: connection closed")
                buf += chunk
        reply = json.loads(buf)
        if not reply["ok"]:
            raise RuntimeError(f"{cmd}: {reply['error']}")
        return reply["result"]

    def boot_files(self) -> dict[str, str]:
        s = boot_slice(self.img)
        return {n: fat_read(self.img, s, n).decode() for n in fat_list(self.img, s) if n.endswith(".txt")}

    def stop(self) -> None:
        if self.qemu.poll() is None:
            self.qemu.kill()
        self.qemu.wait()


def events(db: Path, kiosk: str, kind: str) -> list[tuple]:
    return rows(db, "SELECT code, detail FROM events WHERE kiosk = ? AND kind = ? ORDER BY msg_seq", kiosk, kind)


@pytest.mark.timeout(3600)  # the build (~13 min of emulated dpkg on a loaded 2-core machine) is its setup
def test_image_boots_enrols_and_a_top_up_reaches_the_hall(kiosk_image: Path, hall: Hall, tmp_path: Path) -> None:
    guest = Guest(hall, kiosk_image, "KQ1", tmp_path)
    try:
        guest.wait(guest.online, 900, "KQ1's birth at the hall")
        print(f"boot to enrolled and online at the hall: {time.monotonic() - guest.started:.0f} s")
        assert rows(hall.db, "SELECT kiosk, hall FROM enrolments WHERE kiosk = 'KQ1'") == [("KQ1", "H9")]
        t0 = time.monotonic()
        guest.wait(lambda: accepts(guest.api_port) and _answers(guest), 300, "kioskd's local API")
        menu: dict = {}
        try:
            guest.wait(lambda: menu.update(guest.api("menu")) or menu.get("topup") is True, 120, "top-up on the menu")
        except AssertionError:
            raise AssertionError(f"menu {menu}; status {guest.api('status')}; halld: "
                                 f"{(hall.tmp / 'halld.log').read_text()[-3000:]}") from None
        visit = guest.api("begin", service="topup")
        answers = {"enter_phone": PHONE, "choose_amount": "2000"}
        fed = []

        def step() -> bool:
            screen = guest.api("screen")
            if not screen["busy"] and screen["visit"] == visit and screen["last"]:
                return True
            q = screen.get("question")
            if q and q["prompt"] == "accept_note":  # a bill in escrow: yes, take it
                guest.api("answer", value="accept", n=q["n"])
            elif q and q["prompt"] in answers:
                guest.api("answer", value=answers.pop(q["prompt"]), n=q["n"])
            keys = {shown["key"] for shown in screen.get("shown", [])}
            bill = guest.api("emu", name="cctalk", emu_cmd="state")["bill"]
            if "insert_cash" in keys and not fed and bill["master_enabled"] and bill["inhibit_mask"]:
                fed.append(guest.api("emu", name="cctalk", emu_cmd="insert_bill", value=2000))
            return False

        guest.wait(step, 300, "the top-up to finish")
        assert guest.api("screen")["last"]["state"] == "done", guest.api("screen")
        txn = guest.api("screen")["last"]["txn"]
        guest.wait(lambda: rows(hall.db, "SELECT 1 FROM txns WHERE kiosk = 'KQ1' AND txn = ?", txn), 120,
                   f"{txn} in the hall's database")
        assert rows(hall.db, "SELECT service, phone, amount_fen, state FROM txns WHERE txn = ?", txn) == \
            [("topup", PHONE, 2000, "done")]
        print(f"top-up on the kiosk to the hall's database: {time.monotonic() - t0:.0f} s")
    finally:
        guest.stop()


def _answers(guest: Guest) -> bool:
    try:
        return guest.api("status")["state"] in ("ready", "degraded")
    except (OSError, ValueError, RuntimeError):
        return False


@pytest.mark.timeout(3600)
def test_an_update_that_fails_its_health_check_rolls_back_to_the_old_slot(kiosk_image: Path, hall: Hall,
                                                                          update_key, tmp_path: Path) -> None:
    t0 = time.monotonic()
    made = bundle.from_image(kiosk_image, hall.updates / "kiosk-1.1.kup", "1.1", update_key[0],
                             {"/etc/kiosk/kiosk.toml": b"[kiosk]\nid = 'x'\nhall = 'x'\nno_such_key = 1\n"})
    print(f"bundle: {made.size / 2**20:.0f} MiB root in {time.monotonic() - t0:.0f} s")
    guest = Guest(hall, kiosk_image, "KQ2", tmp_path)
    try:
        guest.wait(guest.online, 900, "KQ2's birth at the hall")
        t0 = time.monotonic()
        args = {"url": f"https://{HOST}:{hall.enrol_port}/updates/kiosk-1.1.kup", "version": "1.1",
                "health_timeout_s": 60}
        r = subprocess.run([sys.executable, "-m", "hall.halld", "cmd", "KQ2", "update", "--args", json.dumps(args),
                            "--api", hall.api, "--token", hall.token, "--timeout", "60"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["result"]["slot"] == "B"
        guest.wait(lambda: "rolled_back" in [c for c, _ in events(hall.db, "KQ2", "update")], 1500,
                   "KQ2 to report the rollback")
        print(f"update announced to rolled back and reported: {time.monotonic() - t0:.0f} s")
        steps = events(hall.db, "KQ2", "update")
        assert [c for c, _ in steps] == ["accepted", "waiting", "installing", "installed", "rolled_back"], steps
        why = steps[-1][1]
        said = [line for line in guest.tail_all().splitlines()
                if any(w in line for w in ("initrd:", "reboot", "Reboot", "kioskd.service", "kiosk-trial", "guard"))]
        assert "from 1.1 in slot B to 1.0 in slot A" in why and "within 60 s of boot" in why, \
            why + "\nconsole:\n" + "\n".join(said[-80:])
        guest.wait(guest.online, 300, "KQ2 online again")
        said = [line.strip() for line in guest.tail_all().splitlines() if line.startswith("initrd: root slot")]
        assert said == ["initrd: root slot A (/dev/vda2)", "initrd: root slot B (/dev/vda3)",
                        "initrd: root slot A (/dev/vda2)"], said  # tried once, then the committed slot again
    finally:
        guest.stop()
    files = guest.boot_files()
    assert files["slot.txt"] == "A\n" and "trying.txt" not in files and "tryboot.txt" not in files, files
