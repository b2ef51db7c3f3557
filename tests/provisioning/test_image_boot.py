"""The real image: built once per session (mmdebstrap arm64), personalised, booted under
qemu-system-aarch64 -M virt with its own kernel and initrd (-kernel/-initrd); systemd starts kioskd
--simulate from the read-only root, it enrols at the halld on the host (10.0.2.2 through qemu's
user network) and joins the hall's secure broker with its new certificate."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hall.broker import free_port
from hall.enrol import issue_token
from hall.mosquitto_secure import start_secure_broker
from provisioning.certs import mint_ca, mint_client, mint_server

from .conftest import tool
from .test_enrolment import accepts, wait_for

HOST = "10.0.2.2"  # the host as qemu's user network shows it to the guest
FLEET = {"H9": ["KQ1"]}


@pytest.fixture(scope="session")
def kiosk_image(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("image")
    out = d / "kiosk.img"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "image", "build", "--out", str(out), "--simulate"],
                       capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-4000:] + (d / "kiosk.work" / "build.log").read_text()[-4000:]
    print(f"image build: {time.monotonic() - t0:.0f} s; {r.stdout.strip()}")
    shutil.rmtree(d / "kiosk.work")  # 750 MB of root tree; the image and its kernel/initrd stay
    return out


def rows(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        try:
            return c.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


@pytest.mark.timeout(3600)  # the build (~13 min of emulated dpkg on a loaded 2-core machine) is its setup
def test_image_boots_enrols_and_joins_the_hall(kiosk_image: Path, tmp_path: Path) -> None:
    ca = mint_ca(tmp_path / "ca")
    server = mint_server(ca, tmp_path / "ca", ["localhost", "127.0.0.1", HOST])
    mint_client(ca, tmp_path / "ca", "halld")
    broker = start_secure_broker(tmp_path / "mosquitto", ca, server, FLEET)
    db, port = tmp_path / "hall.db", free_port()
    halld = subprocess.Popen(
        [sys.executable, "-m", "hall.halld", "serve", "--db", str(db), "--mqtt-host", "localhost",
         "--mqtt-port", str(broker.port), "--hall", "H9", "--http", "off", "--ca", str(ca.cert_path),
         "--cert", str(tmp_path / "ca" / "halld.crt"), "--key", str(tmp_path / "ca" / "halld.key"),
         "--enrol", f"127.0.0.1:{port}", "--enrol-cert", str(server.cert_path), "--enrol-key",
         str(server.key_path), "--fleet-ca-dir", str(tmp_path / "ca")],
        stdout=open(tmp_path / "halld.log", "w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    qemu = None
    try:
        wait_for(lambda: halld.poll() is not None or accepts(port), 60, "halld's enrolment port")
        img = tmp_path / "kiosk.img"
        subprocess.run(["cp", "--sparse=always", str(kiosk_image), str(img)], check=True)
        token = issue_token(str(db), "KQ1", "H9")
        r = subprocess.run([sys.executable, "-m", "provisioning.cli", "personalise", str(img), "--kiosk", "KQ1",
                            "--hall", "H9", "--enrol-url", f"https://{HOST}:{port}/enrol", "--token", token,
                            "--ca", str(ca.cert_path), "--mqtt", f"{HOST}:{broker.port}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        console = tmp_path / "console.log"
        qemu = subprocess.Popen(
            [tool("qemu-system-aarch64"), "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
             "-kernel", str(kiosk_image.with_name("kiosk.vmlinuz")), "-initrd", str(kiosk_image.with_name("kiosk.initrd")),
             "-append", "console=ttyAMA0 root=LABEL=rootA ro net.ifnames=0 panic=-1 systemd.journald.forward_to_console=1 systemd.show_status=0",
             "-drive", f"file={img},format=raw,if=virtio", "-netdev", "user,id=n0",
             "-device", "virtio-net-pci,netdev=n0", "-display", "none", "-monitor", "none",
             "-serial", f"file:{console}", "-no-reboot"])
        t0 = time.monotonic()
        wait_for(lambda: qemu.poll() is not None or rows(db, "SELECT 1 FROM fleet WHERE kiosk = 'KQ1' AND online = 1"),
                 900, f"KQ1's birth at the hall (console: {console})")
        assert qemu.poll() is None, console.read_text()[-4000:]
        print(f"boot to enrolled and online at the hall: {time.monotonic() - t0:.0f} s")
        assert rows(db, "SELECT kiosk, hall FROM enrolments") == [("KQ1", "H9")]
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        halld.terminate()
        halld.wait(30)
        broker.stop()
