"""A/B updates on a real kioskd (subprocess) over a real broker, the test playing the hall: the
`update` command, a bundle served over HTTP, root slots as files, the boot files in a directory.
What the initrd and systemd do around it (boot once, reboot, fall back) is in
tests/provisioning/test_image_boot.py; here each start of kioskd is one boot."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
from pathlib import Path

import pytest

from controller.updater import UPDATE_EXIT, guard
from hal.emulators.control import call
from provisioning.disk import Part, assemble, partitions
from provisioning.updates import keygen, make_bundle
from tests.support.kioskd import start_kioskd, write_config
from tests.support.notify import NotifySocket

from .linkkit import clear_hall_state, hall_client, unique
from .test_commands import HALL, boss_responder, simulated_config

SLOT_BYTES = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    """version 2.0 of a (tiny) root, signed with the fleet's key and with someone else's."""
    d = tmp_path_factory.mktemp("bundles")
    (d / "src" / "etc" / "kiosk").mkdir(parents=True)
    (d / "src" / "etc" / "kiosk" / "release").write_text("2.0\n")
    assemble(d / "whole.img", [Part("rootB", "ext4", 8, d / "src")])
    s = partitions(d / "whole.img")[0]
    with open(d / "whole.img", "rb") as f:
        f.seek(s.offset)
        (d / "root.ext4").write_bytes(f.read(s.size))
    ours, pub = keygen(d / "ours")
    theirs, _ = keygen(d / "theirs")
    served = d / "www"
    served.mkdir()
    make_bundle(d / "root.ext4", served / "good.kup", "2.0", ours)
    make_bundle(d / "root.ext4", served / "forged.kup", "2.0", theirs)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"pub": pub, "payload": (d / "root.ext4").read_bytes(), "url": f"http://127.0.0.1:{server.server_port}"}
    server.shutdown()


def kiosk_dir(tmp: Path, running: str, boot_files: dict[str, str]) -> dict[str, Path]:
    boot = tmp / "boot"
    boot.mkdir()
    for name, text in boot_files.items():
        (boot / name).write_text(text)
    slots = {s: tmp / f"slot{s}.img" for s in "AB"}
    for path in slots.values():
        path.write_bytes(b"\0" * SLOT_BYTES)
    return {"boot": boot, **slots, "running": running}


def update_section(d: dict, pub: Path) -> str:
    return (f'\n[update]\npublic_key = "{pub}"\nboot_dir = "{d["boot"]}"\nslot_a = "{d["A"]}"\n'
            f'slot_b = "{d["B"]}"\nrunning = "{d["running"]}"\n')


def updates(hall) -> list[dict]:
    """Update events as the hall saw them, once each (unacked rows are sent again after 10 s)."""
    by_seq = {g.body["msg_seq"]: g.body for g in hall.seen if g.leaf == "event" and g.body.get("kind") == "update"}
    return [by_seq[s] for s in sorted(by_seq)]


async def update_event(hall, code: str, after: int = 0, timeout: float = 20.0) -> dict:
    """The first `update` event with this code after outbox seq `after`, seen already or to come."""
    got = await hall.find("event", where=lambda g: g.body.get("kind") == "update" and g.body["code"] == code
                          and g.body["msg_seq"] > after, timeout=timeout)
    return got.body


@contextlib.contextmanager
def kioskd_running(*args: str, log_path: Path):
    proc = start_kioskd(*args, log_path=log_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in proc.log(), proc.log()


async def test_a_forged_bundle_is_refused_and_a_good_one_waits_for_the_customer(tmp_path, broker, bundles):
    kiosk = unique()
    await clear_hall_state(broker.port, HALL)
    d = kiosk_dir(tmp_path, "A", {"slot.txt": "A\n"})
    config = simulated_config(tmp_path, broker.port, kiosk)
    config.write_text(config.read_text() + update_section(d, bundles["pub"]))
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = start_kioskd("--config", str(config), "--simulate", log_path=tmp_path / "kioskd.log",
                        env={"NOTIFY_SOCKET": notify.path}, cwd=tmp_path)
    sock = str(tmp_path / "run" / "kioskd.sock")
    try:
        notify.wait_for("READY=1", timeout=30)
        async with boss_responder(broker.port, kiosk), hall_client(broker.port, HALL, kiosk) as hall:
            await hall.next("status", where=lambda g: g.body["online"] is True, timeout=20)

            # signed with another key: refused on its first bytes, nothing written, customers served again
            reply = await hall.command("update", {"schema": 1, "args": {"url": bundles["url"] + "/forged.kup",
                                                                        "version": "2.0"}})
            assert reply["ok"] is True and reply["result"]["slot"] == "B", reply
            refused = await update_event(hall, "refused")
            assert "bad signature" in refused["detail"], refused
            assert d["B"].read_bytes() == b"\0" * SLOT_BYTES
            assert not (d["boot"] / "tryboot.txt").exists()
            await _until(lambda: call(sock, "status"), lambda s: s["state"] == "ready")

            # a customer in flight: the good bundle waits for the visit to end
            await call(sock, "begin", service="topup")
            reply = await hall.command("update", {"schema": 1, "args": {"url": bundles["url"] + "/good.kup",
                                                                        "version": "2.0", "health_timeout_s": 300}})
            assert reply["ok"] is True, reply
            accepted = await update_event(hall, "accepted", after=refused["msg_seq"])
            waiting = await update_event(hall, "waiting", after=accepted["msg_seq"])
            assert d["B"].read_bytes() == b"\0" * SLOT_BYTES and not (d["boot"] / "tryboot.txt").exists()
            again = await hall.command("update", {"schema": 1, "args": {"url": bundles["url"] + "/good.kup",
                                                                        "version": "2.0"}})
            assert again["ok"] is False and "already in progress" in again["error"]["message"], again
            await call(sock, "cancel")
            visit = await hall.find("txn", timeout=20)
            installing = await update_event(hall, "installing", after=waiting["msg_seq"])
            installed = await update_event(hall, "installed", after=waiting["msg_seq"], timeout=30)
            assert waiting["msg_seq"] < visit.body["msg_seq"] < installing["msg_seq"] < installed["msg_seq"]
            assert await asyncio.to_thread(proc.wait, 30) == UPDATE_EXIT  # the unit reboots (ExecStopPost on 76)
        payload = bundles["payload"]
        assert d["B"].read_bytes()[:len(payload)] == payload
        assert d["A"].read_bytes() == b"\0" * SLOT_BYTES  # the running slot is never touched
        assert (d["boot"] / "tryboot.txt").read_text() == "B 2.0 300\n"
        assert (d["boot"] / "slot.txt").read_text() == "A\n"  # committed: still the old one
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    assert "Traceback" not in proc.log(), proc.log()


async def _until(get, ok, timeout: float = 20.0):
    async with asyncio.timeout(timeout):
        while not ok(value := await get()):
            await asyncio.sleep(0.1)
    return value


def plain_config(tmp_path: Path, port: int, kiosk: str, d: dict, pub: Path) -> Path:
    config = write_config(tmp_path, port)
    config.write_text(config.read_text().replace('"K-TEST-1"', f'"{kiosk}"').replace('"H-TEST"', f'"{HALL}"')
                      + update_section(d, pub))
    return config


async def test_the_trial_boot_commits_only_after_the_hall_acknowledges_it_healthy(tmp_path, broker, bundles):
    kiosk = unique()
    d = kiosk_dir(tmp_path, "B", {"slot.txt": "A\n", "trying.txt": "B 2.0 300\n"})  # the initrd booted B once
    config = plain_config(tmp_path, broker.port, kiosk, d, bundles["pub"])
    async with hall_client(broker.port, HALL, kiosk) as hall:
        with kioskd_running("--config", str(config), log_path=tmp_path / "kioskd.log"):
            healthy = await update_event(hall, "healthy")
            assert (d["boot"] / "slot.txt").read_text() == "A\n"  # not before the hall has it
            assert (d["boot"] / "trying.txt").exists()
            await hall.ack(healthy["msg_seq"])
            committed = await update_event(hall, "committed")
            assert committed["data"] == {"version": "2.0", "slot": "B"}
            assert (d["boot"] / "slot.txt").read_text() == "B\n" and not (d["boot"] / "trying.txt").exists()


@pytest.mark.parametrize("case", ["rolled_back", "interrupted"])
async def test_a_start_reports_what_the_last_boot_left(tmp_path, broker, bundles, case):
    """Back on slot A after B's trial (the guard's reason on the card), or after a power cut mid-install."""
    kiosk = unique()
    files = {"slot.txt": "A\n"}
    if case == "rolled_back":
        files["trying.txt"] = "B 2.0 300\nno healthy report acknowledged by the hall within 300 s of boot (kioskd: failed)\n"
    d = kiosk_dir(tmp_path, "A", files)
    if case == "interrupted":
        (tmp_path / "state" / "update").mkdir(parents=True)
        (tmp_path / "state" / "update" / "state.json").write_text('{"step": "installing", "version": "2.0", "slot": "B"}')
    config = plain_config(tmp_path, broker.port, kiosk, d, bundles["pub"])
    async with hall_client(broker.port, HALL, kiosk) as hall:
        with kioskd_running("--config", str(config), log_path=tmp_path / "kioskd.log"):
            event = await update_event(hall, case)
    if case == "rolled_back":
        assert "from 2.0 in slot B" in event["detail"] and "within 300 s of boot (kioskd: failed)" in event["detail"]
    else:
        assert "stopped at 'installing'" in event["detail"] and event["data"]["slot"] == "B"
    assert not (d["boot"] / "trying.txt").exists() and (d["boot"] / "slot.txt").read_text() == "A\n"
    assert [e["code"] for e in updates(hall)] == [case]


MOUNTS = ("29 1 254:{n} / / ro,relatime shared:1 - ext4 /dev/vda{n} ro\n"
          "40 29 254:1 / {boot} rw,noatime shared:20 - vfat /dev/vda1 rw,uid=990\n")


def test_the_guard_reboots_an_uncommitted_trial_once_its_time_is_up(tmp_path):
    (tmp_path / "trying.txt").write_text("B 2.0 300\n")
    slept, reboots = [], []
    did = guard(tmp_path, MOUNTS.format(n=3, boot=tmp_path), 40.0, sleep=slept.append, reboot=lambda: reboots.append(1))
    assert slept == [260.0] and reboots == [1], did
    assert "no healthy report acknowledged by the hall within 300 s" in (tmp_path / "trying.txt").read_text()
    # committed while the guard slept: nothing to do
    (tmp_path / "trying.txt").write_text("B 2.0 300\n")
    did = guard(tmp_path, MOUNTS.format(n=3, boot=tmp_path), 10.0, sleep=lambda s: (tmp_path / "trying.txt").unlink(),
                reboot=lambda: reboots.append(2))
    assert reboots == [1] and "committed in time" in did
    # the boot fell back to A (B did not mount): kioskd reports it, the guard keeps out
    (tmp_path / "trying.txt").write_text("B 2.0 300\n")
    assert guard(tmp_path, MOUNTS.format(n=2, boot=tmp_path), 10.0, sleep=slept.append, reboot=lambda: reboots.append(3)) \
        == "not a trial boot"
    assert reboots == [1]
