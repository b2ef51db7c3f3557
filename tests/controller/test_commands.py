"""Hall -> kiosk commands on a real kioskd (--simulate, every device on its emulator) over a real
broker: cmd/{name} with response topic + correlation data, replies checked, garbage included.
The journal is seeded before kioskd starts with a transaction held for review and a refund voucher,
written by the real journal functions."""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from controller.daemon import SIMULATED_CONFIG
from hal.emulators.control import call
from tests.support.kioskd import start_kioskd
from tests.support.notify import NotifySocket
from transactions import Journal, records

from .linkkit import V5, hall_client, unique, until

HALL = "H-CMD"


def simulated_config(tmp: Path, port: int, kiosk: str) -> Path:
    """The shipped simulated kiosk, with its own id, directories and broker (set_config writes it)."""
    text = SIMULATED_CONFIG.read_text()
    text = re.sub(r'(?m)^id = .*$', f'id = "{kiosk}"', text, count=1)
    text = re.sub(r'(?m)^hall = .*$', f'hall = "{HALL}"', text, count=1)
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{tmp}/state"', text, count=1)
    text = re.sub(r'(?m)^runtime_dir = .*$', f'runtime_dir = "{tmp}/run"', text, count=1)
    text = re.sub(r'(?m)^port = 1883$', f'port = {port}', text, count=1)
    text = text.replace("[mqtt]", "[mqtt]\n# the hall broker (this comment must survive set_config)", 1)
    path = tmp / "kiosk.toml"
    path.write_text(text)
    return path


async def seed(state_dir: Path, kiosk: str) -> dict[str, str]:
    """A top-up held for review (50 yuan) and a refunded one with a voucher (20 yuan)."""
    async with Journal(state_dir / "journal.db", kiosk=kiosk) as j:
        def review(conn):
            txn = records.new_txn(conn, kiosk, j.boot, "topup", "13800138000", "start", time.time())
            records.add_money(conn, txn, [("cash_in", 5000, "bill:bill")], time.time())
            records.finish_for_review(conn, txn, "stack cut", time.time())
            return txn

        def voucher(conn):
            txn = records.new_txn(conn, kiosk, j.boot, "topup", "13900139000", "start", time.time())
            records.add_money(conn, txn, [("cash_in", 2000, "bill:bill")], time.time())
            code = records.issue_voucher(conn, txn, 2000, "boss refused", time.time())
            records.finish_txn(conn, txn, "refunded", time.time())
            return txn, code

        held = await j.write(review)
        refunded, code = await j.write(voucher)
    return {"held": held, "refunded": refunded, "claim": code}


@pytest.fixture(scope="module")
def kioskd(tmp_path_factory, broker):
    tmp = tmp_path_factory.mktemp("cmd")
    kiosk = unique()
    config = simulated_config(tmp, broker.port, kiosk)
    seeded = asyncio.run(seed(tmp / "state", kiosk))
    notify = NotifySocket(tmp / "notify.sock")
    proc = start_kioskd("--config", str(config), "--simulate", log_path=tmp / "kioskd.log",
                        env={"NOTIFY_SOCKET": notify.path}, cwd=tmp)
    notify.wait_for("READY=1", timeout=20)
    yield {"kiosk": kiosk, "config": config, "sock": str(tmp / "run" / "kioskd.sock"), "proc": proc, **seeded}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.log()
    notify.close()
    assert "Traceback" not in proc.log()


@contextlib.asynccontextmanager
async def boss_responder(port: int, kiosk: str):
    """Stands in for halld's BOSS gateway: every request answered ok (the menu pings the BOSS)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    async with aiomqtt.Client("127.0.0.1", port, protocol=V5, timeout=5) as client:
        await client.subscribe(f"kiosk/v1/{HALL}/{kiosk}/boss/req", qos=1)

        async def serve():
            async for m in client.messages:
                props = Properties(PacketTypes.PUBLISH)
                props.CorrelationData = m.properties.CorrelationData
                await client.publish(m.properties.ResponseTopic, b'{"schema":1,"ok":true,"result":{}}', qos=1,
                                     properties=props)

        task = asyncio.get_running_loop().create_task(serve())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@pytest.fixture
async def hall(kioskd, broker):
    async with boss_responder(broker.port, kioskd["kiosk"]), hall_client(broker.port, HALL, kioskd["kiosk"]) as h:
        await h.next("status", where=lambda g: g.body["online"] is True)  # birth comes after the subscriptions
        yield h


async def ok(hall, name, **args):
    reply = await hall.command(name, {"schema": 1, "args": args})
    assert reply["ok"] is True, reply
    assert reply["schema"] == 1
    return reply["result"]


async def err(hall, name, payload) -> str:
    reply = await hall.command(name, payload)
    assert reply["ok"] is False and reply["schema"] == 1, reply
    assert reply["error"]["message"]
    return reply["error"]["code"]


async def test_unknown_commands_and_garbage_get_error_replies_and_kioskd_lives_on(kioskd, hall):
    assert await err(hall, "self_destruct", {"schema": 1, "args": {}}) == "unknown_command"
    for junk in (b"\xff\xfe", b"", b"[]", b"null", b'{"args": {}}', b'{"schema": 2, "args": {}}',
                 b'{"schema": 1, "args": [1]}', b"{" * 5000):
        assert await err(hall, "inhibit_cash", junk) == "bad_payload", junk
    for name, args in [("inhibit_cash", {"inhibit": "yes"}), ("inhibit_cash", {}), ("inhibit_cash", {"inhibit": True, "x": 1}),
                       ("enable_service", {"service": "toaster"}), ("disable_service", {"service": 3}),
                       ("sync_time", {"ts": "now"}), ("sync_time", {"ts": 12}), ("sync_time", {"ts": True}),
                       ("reprint", {}), ("set_config", {"key": "flows.idle_timeout"}),
                       ("resolve_review", {"txn": "x", "resolution": "forgiven"}), ("resolve_refund", {"claim": "x"}),
                       ("request_telemetry", {"now": True}), ("restart", {"force": True})]:
        assert await err(hall, name, {"schema": 1, "args": args}) == "bad_args", (name, args)
    status = await call(kioskd["sock"], "status")
    assert status["state"] == "ready" and status["hall_link"] is True
    assert kioskd["proc"].poll() is None


async def test_disable_and_enable_a_service(kioskd, hall):
    assert (await call(kioskd["sock"], "menu"))["topup"] is True
    result = await ok(hall, "disable_service", service="topup")
    assert result == {"service": "topup", "enabled": False, "disabled": ["topup"]}
    menu = await call(kioskd["sock"], "menu")
    assert menu["topup"] is False and menu["card_sale"] is True
    status = await hall.find("status", where=lambda g: g.body["disabled_services"] == ["topup"])
    assert status.body["online"] is True
    with pytest.raises(Exception, match="disabled by the hall"):
        await call(kioskd["sock"], "begin", service="topup")
    await ok(hall, "enable_service", service="topup")
    assert (await call(kioskd["sock"], "menu"))["topup"] is True


async def test_a_command_without_response_topic_is_executed_without_a_reply(kioskd, hall):
    await hall.command("disable_service", {"schema": 1, "args": {"service": "bill_pay"}}, reply=False)
    await until(lambda: _disabled(kioskd, "bill_pay"), timeout=5)
    await ok(hall, "enable_service", service="bill_pay")
    assert not [g for g in hall.seen if g.leaf.startswith("cmdresp/") and g.body["result"].get("service") == "bill_pay"
                and g.body["result"]["enabled"] is False]


async def _disabled(kioskd, service):
    return service in (await call(kioskd["sock"], "status"))["disabled_services"]


async def test_inhibit_cash_stops_cash_services_until_released(kioskd, hall):
    result = await ok(hall, "inhibit_cash", inhibit=True)
    assert sorted(result["acceptors"]) == ["bill", "coin"] and result["inhibit"] is True
    menu = await call(kioskd["sock"], "menu")
    assert menu["topup"] is False and menu["card_sale"] is False and menu["balance_query"] is True
    await ok(hall, "disable_service", service="invoice")
    try:
        # what a technician at the kiosk reads: both of the hall's decisions, named
        lines = (await _kioskctl_status(kioskd)).splitlines()
        assert "cash      INHIBITED by the hall (inhibit_cash)" in lines and "disabled  invoice" in lines, lines
    finally:
        await ok(hall, "enable_service", service="invoice")
    await ok(hall, "inhibit_cash", inhibit=False)
    assert (await call(kioskd["sock"], "menu"))["topup"] is True
    lines = (await _kioskctl_status(kioskd)).splitlines()
    assert "cash      accepted" in lines and "disabled  none" in lines, lines


async def _kioskctl_status(kioskd) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "controller.kioskctl", "--socket", kioskd["sock"],
                                                "status", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_reprint_prints_the_receipt_again_marked_as_a_reprint(kioskd, hall):
    result = await ok(hall, "reprint", txn=kioskd["refunded"])
    assert result == {"txn": kioskd["refunded"], "printed": True}
    receipts = await call(kioskd["sock"], "emu", name="escpos", emu_cmd="receipts")
    assert "补打" in receipts[-1] and kioskd["refunded"] in receipts[-1] and kioskd["claim"] in receipts[-1]
    assert await err(hall, "reprint", {"schema": 1, "args": {"txn": "no-such-txn"}}) == "refused"


async def test_sync_time_sets_the_rtc_and_reports_the_offset(kioskd, hall):
    result = await ok(hall, "sync_time", ts=time.time())
    assert abs(result["system_offset_s"]) < 5
    assert result["rtc"]["clock"]["set"] is True


async def test_request_telemetry_publishes_now(kioskd, hall):
    result = await ok(hall, "request_telemetry")
    published = [g for g in hall.seen if g.leaf == "telemetry" and g.body["ts"] == result["ts"]]
    assert len(published) == 1  # published before the reply, not at the next interval
    assert "outbox_depth" in result and result["kiosk"] == kioskd["kiosk"]
    assert result["cashbox"]["fen"] >= 0 and isinstance(result["devices"], dict) and result["devices"]["printer"] in ("ok", "degraded")


async def test_set_config_validates_persists_keeping_comments_and_applies(kioskd, hall):
    path: Path = kioskd["config"]
    before = path.read_text()
    assert await err(hall, "set_config", {"schema": 1, "args": {"key": "flows.idle_timeout", "value": "soon"}}) == "bad_args"
    assert await err(hall, "set_config", {"schema": 1, "args": {"key": "flows.nope", "value": 1}}) == "bad_args"
    assert await err(hall, "set_config", {"schema": 1, "args": {"key": "kiosk.id", "value": "K-EVIL"}}) == "bad_args"
    assert path.read_text() == before  # refused: the file is untouched
    old_hash = (await call(kioskd["sock"], "status"))["config_hash"]

    result = await ok(hall, "set_config", key="flows.idle_timeout", value=90)
    assert result["restart_needed"] == [] and result["config_hash"] != old_hash
    text = path.read_text()
    assert "idle_timeout = 90" in text and "this comment must survive set_config" in text
    assert (await call(kioskd["sock"], "status"))["config_hash"] == result["config_hash"]

    result = await ok(hall, "set_config", key="mqtt.keepalive_s", value=45)
    assert result["restart_needed"] == ["mqtt.keepalive_s"]


async def test_apply_settings_keeps_services_denominations_and_notices_in_one_write_and_applies_them(kioskd, hall):
    import tomllib

    path: Path = kioskd["config"]
    before = path.read_text()
    for bad in ({}, {"services": ["toaster"]}, {"denominations": [300]}, {"denominations": ["100"]},
                {"notices": ["x" * 121]}, {"notices": ["a"] * 6}, {"notices": ["bell\x07"]}, {"colour": "red"}):
        assert await err(hall, "apply_settings", {"schema": 1, "args": bad}) == "bad_args", bad
    assert path.read_text() == before
    everything = tomllib.loads(before).get("kiosk", {}).get("services") or list((await call(kioskd["sock"], "menu")))
    notices = ["今日营业至 18:00 / Open until 18:00 today", "<b>不是标记</b> / not markup"]
    result = await ok(hall, "apply_settings", services=["topup", "balance_query"], denominations=[1000, 2000, 5000],
                      notices=notices)
    assert result["restart_needed"] == [] and result["notices"] == notices
    saved = tomllib.loads(path.read_text())
    assert saved["kiosk"]["services"] == ["topup", "balance_query"]
    assert saved["flows"]["denominations"] == [1000, 2000, 5000] and saved["ui"]["notices"] == notices
    assert "this comment must survive set_config" in path.read_text()
    menu = await call(kioskd["sock"], "menu")  # applied now, not at the next restart
    assert menu["topup"] is True and menu["bill_pay"] is False and menu["card_sale"] is False
    assert (await call(kioskd["sock"], "status"))["config_hash"] == result["config_hash"]
    await ok(hall, "apply_settings", services=everything, denominations=[10, 50, 100, 500, 1000, 2000, 5000, 10000])
    assert (await call(kioskd["sock"], "menu"))["bill_pay"] is True


async def test_load_cards_adds_to_the_stock_and_tells_the_hall(kioskd, hall):
    status = await call(kioskd["sock"], "status")
    assert status["state"] == "ready"
    assert await err(hall, "load_cards", {"schema": 1, "args": {"face_fen": 3000, "added": 0}}) == "bad_args"
    assert await err(hall, "load_cards", {"schema": 1, "args": {"face_fen": 3000, "added": True}}) == "bad_args"
    assert await err(hall, "load_cards", {"schema": 1, "args": {"face_fen": 4200, "added": 5}}) == "refused"
    first = await ok(hall, "load_cards", face_fen=3000, added=40)
    second = await ok(hall, "load_cards", face_fen=3000, added=2)
    assert second["stock"] == first["stock"] + 2 and first["stock"] >= 40
    event = await hall.find("event", where=lambda g: g.body.get("kind") == "cards_loaded" and g.body["added"] == 2)
    assert event.body["stock"] == second["stock"] and event.body["face_fen"] == 3000
    await hall.find("status", where=lambda g: (g.body.get("card_stock") or {}).get("3000") == second["stock"])


async def test_a_full_outbox_raises_the_alarm_and_stops_cash_services(kioskd, hall):
    """max_outbox lowered below what is waiting for halld's ack (our stand-in hall never acks)."""
    await ok(hall, "set_config", key="flows.max_outbox", value=0)
    status = await call(kioskd["sock"], "status")
    assert "outbox_full" in status["alarms"]
    menu = await call(kioskd["sock"], "menu")
    assert menu["topup"] is False and menu["balance_query"] is True
    event = await hall.find("event", where=lambda g: g.body.get("code") == "outbox_full")
    assert event.body["raised"] is True
    await hall.find("status", where=lambda g: "outbox_full" in g.body["alarms"])
    await ok(hall, "set_config", key="flows.max_outbox", value=20000)
    assert (await call(kioskd["sock"], "status"))["alarms"] == []
    assert (await call(kioskd["sock"], "menu"))["topup"] is True


async def test_resolve_review_and_resolve_refund_are_journalled_once(kioskd, hall):
    result = await ok(hall, "resolve_review", txn=kioskd["held"], resolution="refunded", note="paid at the counter")
    assert result == {"txn": kioskd["held"], "resolution": "refunded", "held_fen": 5000}
    event = await hall.find("event", where=lambda g: g.body.get("kind") == "review_resolved")
    assert event.body["txn"] == kioskd["held"] and event.body["msg_seq"] > 0
    again = {"schema": 1, "args": {"txn": kioskd["held"], "resolution": "written_off"}}
    assert await err(hall, "resolve_review", again) == "refused"
    not_held = {"schema": 1, "args": {"txn": kioskd["refunded"], "resolution": "credited"}}
    assert await err(hall, "resolve_review", not_held) == "refused"

    result = await ok(hall, "resolve_refund", claim=kioskd["claim"], resolution="paid")
    assert result["fen"] == 2000 and result["txn"] == kioskd["refunded"]
    twice = {"schema": 1, "args": {"claim": kioskd["claim"], "resolution": "paid"}}
    assert await err(hall, "resolve_refund", twice) == "refused"
    txn = await call(kioskd["sock"], "status")
    assert txn["state"] == "ready"


async def test_a_reply_goes_only_under_our_own_cmdresp(kioskd, hall, broker):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=V5, timeout=5) as spy:
        await spy.subscribe("elsewhere/#", qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "elsewhere/x"
        props.CorrelationData = b"c"
        await hall.client.publish(hall.base + "cmd/request_telemetry", b'{"schema":1,"args":{}}', qos=1, properties=props)
        await hall.next("telemetry")  # executed ...
        await ok(hall, "enable_service", service="topup")  # ... and a later reply went out, this one did not
        assert len(spy.messages) == 0


async def test_restart_replies_drains_and_exits_for_systemd_to_restart(tmp_path, broker):
    from tests.support.kioskd import write_config

    config = write_config(tmp_path, broker.port)
    kiosk = unique()
    config.write_text(config.read_text().replace('"K-TEST-1"', f'"{kiosk}"').replace('"H-TEST"', f'"{HALL}"'))
    proc = start_kioskd("--config", str(config), log_path=tmp_path / "kioskd.log")
    try:
        async with hall_client(broker.port, HALL, kiosk) as hall:
            await hall.next("status", where=lambda g: g.body["online"] is True, timeout=20)
            reply = await hall.command("restart", {"schema": 1, "args": {}})
            assert reply["ok"] is True and reply["result"]["restarting"] is True
            assert await asyncio.to_thread(proc.wait, 20) == 75  # systemd: Restart=on-failure starts it again
            offline = await hall.next("status", where=lambda g: g.body["online"] is False)
            assert offline.body["session"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "restart requested by the hall" in proc.log()
    unit = (Path(__file__).parents[2] / "systemd" / "kioskd.service").read_text()
    assert re.search(r"(?m)^Restart=(on-failure|always)$", unit)


@contextlib.contextmanager
def own_kioskd(tmp: Path, config: Path, n: int, *extra: str):
    """A kioskd --simulate of the test's own (the n-th start on this config), stopped by SIGTERM."""
    notify = NotifySocket(tmp / f"notify{n}.sock")
    proc = start_kioskd("--config", str(config), *extra, "--simulate", log_path=tmp / "kioskd.log",
                        env={"NOTIFY_SOCKET": notify.path}, cwd=tmp)
    try:
        notify.wait_for("READY=1", timeout=20)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.log()
        notify.close()
    assert "Traceback" not in proc.log()


async def test_with_settings_the_halls_settings_go_to_their_own_file_and_survive_a_restart(tmp_path, broker):
    """The image's way (provisioning/image.py): kiosk.toml on the read-only root, the hall's
    settings in --settings on the data partition. kiosk.toml is never written; the settings hold
    over a restart (and over an update, which brings its own kiosk.toml)."""
    import tomllib

    kiosk = unique()
    config = simulated_config(tmp_path, broker.port, kiosk)
    shipped = config.read_bytes()
    settings = tmp_path / "data" / "settings.toml"
    settings.parent.mkdir()
    notices = ["今日营业至 18:00 / Open until 18:00 today"]

    with own_kioskd(tmp_path, config, 1, "--settings", str(settings)):
        async with hall_client(broker.port, HALL, kiosk) as h:
            await h.next("status", where=lambda g: g.body["online"] is True)
            assert await err(h, "set_config", {"schema": 1, "args": {"key": "kiosk.id", "value": "K-EVIL"}}) == "bad_args"
            assert await err(h, "set_config", {"schema": 1, "args": {"key": "flows.nope", "value": 1}}) == "bad_args"
            assert not settings.exists()  # refused: nothing written
            await ok(h, "set_config", key="flows.idle_timeout", value=90)
            result = await ok(h, "apply_settings", notices=notices)
    assert config.read_bytes() == shipped
    assert tomllib.loads(settings.read_text()) == {"flows": {"idle_timeout": 90}, "ui": {"notices": notices}}

    with own_kioskd(tmp_path, config, 2, "--settings", str(settings)):
        status = await call(str(tmp_path / "run" / "kioskd.sock"), "status")
        assert status["config_hash"] == result["config_hash"]  # the same kiosk.toml + settings, read at start


async def test_a_command_delivered_again_after_a_restart_is_not_run_twice(tmp_path, broker):
    """The broker redelivers an unacknowledged QoS 1 command when kioskd comes back; halld retries
    with the same id. Either way a command runs once: load_cards twice would count the cards twice."""
    kiosk = unique()
    config = simulated_config(tmp_path, broker.port, kiosk)
    journal = tmp_path / "state" / "journal.db"
    load = {"schema": 1, "id": "cmd-load-1", "deadline": time.time() + 300, "args": {"face_fen": 3000, "added": 20}}
    cut = {"schema": 1, "id": "cmd-cut-1", "deadline": time.time() + 300, "args": {"face_fen": 3000, "added": 5}}
    async with Journal(journal, kiosk=kiosk) as j:  # a load_cards a power cut interrupted in an earlier boot
        await j.write(records.command_started, cut["id"], "load_cards", cut["deadline"], time.time())

    async def stock() -> int:
        async with Journal(journal, kiosk=kiosk) as j:
            return (await j.read(records.counters, "card_stock"))["card_stock"]["3000"]

    with own_kioskd(tmp_path, config, 1):
        async with hall_client(broker.port, HALL, kiosk) as h:
            await h.next("status", where=lambda g: g.body["online"] is True)
            first = await h.command("load_cards", load)
            assert first["ok"] and first["result"]["added"] == 20, first
            assert await h.command("load_cards", load) == first  # a retry while it runs on: the same reply
            again = await h.command("load_cards", cut)
            assert again["ok"] is False and "not run again" in again["error"]["message"], again
    counted = await stock()
    assert counted == first["result"]["stock"]

    with own_kioskd(tmp_path, config, 2):
        async with hall_client(broker.port, HALL, kiosk) as h:
            await h.next("status", where=lambda g: g.body["online"] is True)
            assert await h.command("load_cards", load) == first  # the first run's reply, from the journal
            fresh = await h.command("load_cards", {**load, "id": "cmd-load-2"})
            assert fresh["ok"] and fresh["result"]["stock"] == counted + 20
    assert await stock() == counted + 20  # 20 once by cmd-load-1, 20 by cmd-load-2: nothing twice
    assert "command run before a restart: not run again" in (tmp_path / "kioskd.log").read_text()
