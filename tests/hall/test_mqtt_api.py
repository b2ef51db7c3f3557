"""docs/mqtt-api.yaml is the kiosk<->hall contract (docs/mqtt.md in machine form), and the real
programs keep it.

The document: sound AsyncAPI 3.0 structure (every $ref resolves, operations name messages of
their own channel, topic parameters declared), every schema valid draft-07 JSON Schema, every
example fitting its schema, every topic/command/BOSS op of docs/mqtt.md and bosssim present.
(The official @asyncapi/parser has no Python port; these checks cover what we rely on.)

The run: a real mosquitto, halld (with bosssim behind it), and kioskd --simulate doing a top-up
and a card sale, then every hall command through halld's API, then a restart. A recorder with
retain-as-published records topic, payload, QoS, retain and MQTT 5 properties of everything
under the kiosk's and the hall's topics; each message must fit the schema of the channel whose
address its topic matches, with the QoS/retain of the channel's operation.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, validators
from referencing import Registry
from referencing.jsonschema import DRAFT7

from .kiosk_client import cli_token

ROOT = Path(__file__).resolve().parents[2]
API: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "mqtt-api.yaml").read_text(encoding="utf-8"))
BASE = "urn:kioskd:mqtt-api"
REGISTRY = Registry().with_resource(BASE, DRAFT7.create_resource(API))
HALL, KIOSK = "H-API", "K-API-1"
# JSON Schema counts 50.0 as an integer; on our wire it is a float, and money is never a float.
WireValidator = validators.extend(Draft7Validator, type_checker=Draft7Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, value: type(value) is int))


# -- reading the document ----------------------------------------------------------------------

def pointer(ref: str) -> tuple[str, Any]:
    """Follow a local $ref (and $ref chains) to (JSON pointer, object)."""
    assert ref.startswith("#/"), f"only local refs are used: {ref}"
    node: Any = API
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref} does not resolve"
        node = node[part]
    if isinstance(node, dict) and "$ref" in node:
        return pointer(node["$ref"])
    return ref[1:], node


def messages_of(channel: str) -> dict[str, tuple[str, dict]]:
    """Message name -> (JSON pointer, message object) for one channel."""
    out = {}
    for key, ref in API["channels"][channel]["messages"].items():
        ptr, msg = pointer(ref["$ref"]) if "$ref" in ref else (f"/channels/{channel}/messages/{key}", ref)
        out[msg.get("name", key)] = (ptr, msg)
    return out


def payload_validator(message_ptr: str) -> Draft7Validator:
    return WireValidator({"$ref": f"{BASE}#{message_ptr}/payload"}, registry=REGISTRY)


def operation_of(channel: str) -> dict:
    ops = [op for op in API["operations"].values() if op["channel"]["$ref"] == f"#/channels/{channel}"]
    assert len(ops) == 1, f"channel {channel} needs exactly one operation, has {len(ops)}"
    return ops[0]


def address_re(channel: str) -> re.Pattern:
    address = re.escape(API["channels"][channel]["address"])
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", address) + "$")


ADDRESSES = {name: address_re(name) for name in API["channels"]}
REQUEST_CHANNELS = {op["channel"]["$ref"].split("/")[-1]: op["reply"]["channel"]["$ref"].split("/")[-1]
                    for op in API["operations"].values() if "reply" in op}


def refs(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{path}/{i}")


# -- the document ------------------------------------------------------------------------------

def test_document_is_asyncapi_3_with_every_reference_resolving():
    assert API["asyncapi"] == "3.0.0"
    assert API["info"]["title"] and API["info"]["version"]
    hall, dev = API["servers"]["hall"], API["servers"]["dev"]
    assert (hall["protocol"], hall["host"].rsplit(":", 1)[1], hall["protocolVersion"]) == ("secure-mqtt", "8883", "5")
    assert [pointer(s["$ref"])[1]["type"] for s in hall["security"]] == ["X509"]
    assert (dev["protocol"], dev["protocolVersion"]) == ("mqtt", "5")
    for where, ref in refs(API):
        pointer(ref)  # raises with the broken ref named
    for name, channel in API["channels"].items():
        in_address = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert in_address == set(channel.get("parameters", {})), f"channel {name}: parameters vs address"
    for name, op in API["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel = op["channel"]["$ref"]
        pointer(channel)
        for m in op["messages"]:
            assert m["$ref"].startswith(channel + "/messages/"), f"{name}: {m['$ref']} is not a message of {channel}"
        if "reply" in op:
            reply_channel = op["reply"]["channel"]["$ref"]
            for m in op["reply"]["messages"]:
                assert m["$ref"].startswith(reply_channel + "/messages/"), f"{name} reply: {m['$ref']}"
    covered = {op["channel"]["$ref"].split("/")[-1] for op in API["operations"].values()}
    assert covered == set(API["channels"]), "every channel has an operation"


def test_every_schema_is_draft7_json_schema():
    schemas = dict(API["components"]["schemas"])
    for name, message in API["components"]["messages"].items():
        schemas[f"message {name}"] = message["payload"]
    for name, op in API["operations"].items():
        expiry = op.get("bindings", {}).get("mqtt", {}).get("messageExpiryInterval")
        if isinstance(expiry, dict):
            schemas[f"operation {name} expiry"] = expiry
    for name, trait in API["components"]["messageTraits"].items():
        schemas[f"trait {name} correlationData"] = trait["bindings"]["mqtt"]["correlationData"]
    for name, schema in schemas.items():
        Draft7Validator.check_schema(schema)  # raises SchemaError naming the keyword


def test_every_message_has_examples_that_fit_its_schema():
    for channel in API["channels"]:
        for name, (ptr, message) in messages_of(channel).items():
            assert message.get("examples"), f"{channel}/{name} has no example"
            for example in message["examples"]:
                errors = [e.message for e in payload_validator(ptr).iter_errors(example["payload"])]
                assert not errors, f"{channel}/{name} example {example.get('name', '')}: {errors}"


def test_the_document_covers_docs_mqtt_md_and_the_boss_api():
    from bosssim.state import READS, WRITES

    prose = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `((?:kiosk|hall)/v1/[^`]+)` \| [^|]+ \| ([^|]+) \|", prose, re.M)
    assert len(rows) == 10, rows
    by_address = {ch["address"]: name for name, ch in API["channels"].items()}
    for topic, qos_retain in rows:
        address = topic.replace("/H/", "/{hall}/").replace("/K/", "/{kiosk}/")
        assert address in by_address, f"docs/mqtt.md topic {topic} has no channel"
        mqtt = operation_of(by_address[address])["bindings"]["mqtt"]
        assert (mqtt["qos"], mqtt["retain"]) == (int(qos_retain.strip()[0]), "retained" in qos_retain), topic
    assert len(by_address) == len(rows), "a channel that docs/mqtt.md does not list"
    commands = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)? \| `\{", prose, re.M))
    commands = {c for pair in commands for c in pair if c}
    assert commands == set(API["components"]["parameters"]["name"]["enum"]) == set(messages_of("command"))
    boss = (ROOT / "transactions" / "boss.py").read_text(encoding="utf-8")
    kiosk_ops = set(re.findall(r'_call\("(\w+)"', boss))
    assert kiosk_ops <= READS | WRITES | {"ping"}
    assert set(messages_of("bossRequest")) == set(messages_of("bossReply")) == READS | WRITES | {"ping"}


REFUSED = [  # (channel, message name, payload, why the contract refuses it)
    ("txn", "txn", lambda p: {**p, "amount_fen": 50.0}, "money is integer fen"),
    ("txn", "txn", lambda p: {**p, "schema": 2}, "schema is 1"),
    ("txn", "txn", lambda p: {**p, "schema": 1.0}, "schema is the integer 1"),
    ("txn", "txn", lambda p: {**p, "msg_seq": 0}, "msg_seq starts at 1"),
    ("txn", "txn", lambda p: {k: v for k, v in p.items() if k != "msg_seq"}, "records carry msg_seq"),
    ("event", "event", lambda p: {**p, "device": ""}, "a device event names its device"),
    ("ack", "ack", lambda p: {**p, "msg_seq": "12"}, "msg_seq is an integer"),
    ("ack", "ack", lambda p: {**p, "resend_from": 0}, "resend_from is a msg_seq"),
    ("command", "inhibit_cash", lambda p: {**p, "args": {"inhibit": 1}}, "inhibit is a boolean"),
    ("command", "reprint", lambda p: {**p, "args": {"txn": "x", "copies": 2}}, "args are exact"),
    ("commandReply", "command_reply", lambda p: {"schema": 1, "ok": False, "error": {"code": "oops", "message": ""}},
     "error codes are a closed set"),
    ("bossRequest", "credit", lambda p: {**p, "params": {**p["params"], "fen": 50.5}}, "money is integer fen"),
    ("bossRequest", "credit", lambda p: {**p, "op": "pay_bill"}, "op names the message"),
    ("bossReply", "credit", lambda p: {"schema": 1, "ok": True, "result": {"balance_fen": 1}}, "a credit has a boss_ref"),
    ("status", "status", lambda p: {**p, "online": "yes"}, "online is a boolean"),
    ("hallState", "hall_state", lambda p: {**p, "extra": 1}, "hall state is exact"),
]


@pytest.mark.parametrize("channel,name,mutate,why", REFUSED, ids=[f"{r[0]}:{r[3]}" for r in REFUSED])
def test_the_schemas_refuse_what_the_contract_forbids(channel, name, mutate, why):
    ptr, message = messages_of(channel)[name]
    example = message["examples"][0]["payload"]
    assert payload_validator(ptr).is_valid(example)
    assert not payload_validator(ptr).is_valid(mutate(example)), why


# -- a real run --------------------------------------------------------------------------------

@dataclass
class Seen:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None
    correlation: bytes | None
    expiry: int | None

    def body(self) -> Any:
        return json.loads(self.payload) if self.payload else {}  # {}: an empty retained publish (a clear)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._new = asyncio.Event()

    async def record(self, client: Any) -> None:
        async for m in client.messages:
            props = m.properties
            self.seen.append(Seen(str(m.topic), bytes(m.payload or b""), m.qos, bool(m.retain),
                                  getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None),
                                  getattr(props, "MessageExpiryInterval", None)))
            self._new.set()

    def on(self, channel: str) -> list[Seen]:
        return [s for s in self.seen if ADDRESSES[channel].match(s.topic)]

    async def until(self, what: str, check, timeout: float = 20.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"{what}: not seen within {timeout} s; seen {[s.topic for s in self.seen]}") from None


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _kiosk_config(tmp: Path, broker_port: int) -> Path:
    text = (ROOT / "controller" / "simulated.toml").read_text(encoding="utf-8")
    for old, new in (('id = "SIM-0001"', f'id = "{KIOSK}"'), ('hall = "DEMO-HALL"', f'hall = "{HALL}"'),
                     ('"var/sim/state"', f'"{tmp}/state"'), ('"var/sim/run"', f'"{tmp}/run"'),
                     ("telemetry_interval_s = 10.0", "telemetry_interval_s = 1.0"), ("port = 1883", f"port = {broker_port}")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "kiosk.toml"
    path.write_text(text + '\n[boss]\nvia = "hall"\ntimeout_s = 5.0\n', encoding="utf-8")
    return path


async def _command(api: str, name: str, args: dict, token: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(f"{api}/api/kiosks/{KIOSK}/cmd/{name}", json={"args": args, "hall": HALL, "timeout": 10}) as r:
            return await r.json()


async def _until_offered(sock: str, services: tuple[str, ...], timeout: float = 15.0) -> None:
    """The menu offers these once the kiosk has heard the hall is online and the BOSS answers."""
    from hal.emulators.control import call

    menu: dict = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                menu = await call(sock, "menu")
                if all(menu.get(s) for s in services):
                    return
                await asyncio.sleep(0.05)  # the kiosk has no "menu changed" event to wait on
    except TimeoutError:
        raise AssertionError(f"the menu did not offer {services} within {timeout} s: {menu}") from None


async def _run(tmp: Path, broker_port: int, rec: Recorder) -> dict:
    import aiomqtt
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from demo.customers import ScriptedVisit
    from hall.broker import free_port

    procs: list[subprocess.Popen] = []
    notes: dict[str, Any] = {}
    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="api-recorder",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        everything = SubscribeOptions(qos=2, retainAsPublished=True)  # delivered QoS = published QoS
        await client.subscribe(f"kiosk/v1/{HALL}/#", options=everything)
        await client.subscribe(f"hall/v1/{HALL}/#", options=everything)
        recorder = asyncio.create_task(rec.record(client))
        try:
            boss_port, api_port = free_port(), free_port()
            procs.append(_spawn(["-m", "bosssim", "--port", str(boss_port), "--db", str(tmp / "boss.db")], tmp / "bosssim.log"))
            token = await asyncio.to_thread(cli_token, str(tmp / "hall.db"), "operator")
            procs.append(_spawn(["-m", "hall.halld", "serve", "--db", str(tmp / "hall.db"), "--mqtt-port", str(broker_port),
                                 "--worker", "halld-api", "--hall", HALL, "--boss", f"http://127.0.0.1:{boss_port}",
                                 "--http", f"127.0.0.1:{api_port}"], tmp / "halld.log"))
            await rec.until("halld's hall state online", lambda: any(s.body().get("online") for s in rec.on("hallState")))
            kioskd = _spawn(["-m", "controller", "--simulate", "--config", str(_kiosk_config(tmp, broker_port))],
                            tmp / "kioskd.log")
            procs.append(kioskd)
            await rec.until("the kiosk's birth", lambda: any(s.body().get("online") for s in rec.on("status")), 30)
            sock = str(tmp / "run" / "kioskd.sock")
            await _until_offered(sock, ("topup", "card_sale"))  # the BOSS is asked through the hall
            visit = ScriptedVisit(sock)
            notes["topup"] = await asyncio.to_thread(
                visit.run, "topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
                {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}), ("cctalk", "reject_bill", {}),
                                 ("cctalk", "insert_bill", {"value": 2000}), ("cctalk", "insert_bill", {"value": 1000})]})
            notes["card_sale"] = await asyncio.to_thread(
                visit.run, "card_sale", {"choose_card": "3000"},
                {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}), ("cctalk", "insert_bill", {"value": 1000})],
                 "take_card": [("crt571", "take_card", {})]})
            notes["plan_change"] = await asyncio.to_thread(  # more BOSS ops: query_plans, verify_password, change_plan
                visit.run, "plan_change", {"enter_phone": "13800138000", "choose_plan": "4G-88",
                                           "choose_confirm_method": "password", "enter_password": "123456"}, {})
            api = f"http://127.0.0.1:{api_port}"
            txn = notes["topup"].get("txn", "")
            notes["replies"] = [await _command(api, name, args, token) for name, args in (
                ("request_telemetry", {}), ("disable_service", {"service": "card_sale"}),
                ("enable_service", {"service": "card_sale"}), ("inhibit_cash", {"inhibit": False}),
                ("sync_time", {"ts": time.time()}), ("reprint", {"txn": txn}),
                ("set_config", {"key": "flows.idle_timeout", "value": 90}),
                ("resolve_review", {"txn": txn, "resolution": "written_off", "note": "not held: refused"}),
                ("resolve_refund", {"claim": "NOSUCHCLAIM", "resolution": "paid"}))]

            def all_acked() -> bool:
                records = [s.body()["msg_seq"] for s in rec.on("txn") + rec.on("event")]
                acks = [s.body()["msg_seq"] for s in rec.on("ack")]
                return len(rec.on("txn")) >= 3 and bool(acks) and max(acks) >= max(records)
            await rec.until("every transaction and event acked", all_acked)
            notes["restart"] = await _command(api, "restart", {}, token)
            await rec.until("the kiosk's goodbye", lambda: any(s.body().get("online") is False for s in rec.on("status")))
            procs[1].send_signal(signal.SIGTERM)  # halld leaves: its hall state says offline
            await rec.until("the hall's goodbye", lambda: any(s.body().get("online") is False for s in rec.on("hallState")))
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            recorder.cancel()
            await asyncio.wait({recorder})
    return notes


@pytest.fixture(scope="module")
def capture(broker, tmp_path_factory) -> tuple[Recorder, dict]:
    tmp = tmp_path_factory.mktemp("mqtt-api")
    rec = Recorder()

    async def go() -> dict:
        return await _run(tmp, broker.port, rec)
    try:
        notes = asyncio.run(go())
    except Exception as exc:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp.glob("*.log")))
        raise AssertionError(f"{exc!r}\n{logs}") from exc
    return rec, notes


def _select(channel: str, seen: Seen, params: dict, requests: dict[bytes, Seen]) -> tuple[str, dict]:
    """Which message of the channel this is: the only one, or the one whose name is the topic's
    {name} (commands), the payload's op (BOSS requests), or the op of the request this replies to."""
    msgs = messages_of(channel)
    if len(msgs) == 1:
        return next(iter(msgs.values()))
    if "name" in params:
        key = params["name"]
    elif channel == "bossRequest":
        key = seen.body().get("op")
    else:
        request = requests.get(seen.correlation or b"")
        assert request is not None, f"{seen.topic}: a reply whose correlation data matches no request"
        key = request.body()["op"]
    assert key in msgs, f"{seen.topic}: no message {key!r} on channel {channel}"
    return msgs[key]


CAPTURED = [name for name in API["channels"]]


@pytest.mark.parametrize("channel", CAPTURED)
def test_every_captured_message_fits_its_channel(capture, channel):
    rec, _ = capture
    unmatched = [s.topic for s in rec.seen if not any(r.match(s.topic) for r in ADDRESSES.values())]
    assert not unmatched, f"topics outside the contract: {unmatched}"
    seen = rec.on(channel)
    assert seen, f"the run produced no message on {channel}"
    mqtt = operation_of(channel)["bindings"]["mqtt"]
    requests = {s.correlation: s for s in rec.seen if s.correlation and ADDRESSES["bossRequest"].match(s.topic)}
    problems = []
    for s in seen:
        if not s.payload and s.retain:
            continue  # an empty retained publish clears the topic; it is not a message
        params = ADDRESSES[channel].match(s.topic).groupdict()
        ptr, _ = _select(channel, s, params, requests)
        body = s.body()
        problems += [f"{s.topic} {e.json_path}: {e.message}" for e in payload_validator(ptr).iter_errors(body)]
        if (s.qos, s.retain) != (mqtt["qos"], mqtt["retain"]):
            problems.append(f"{s.topic}: QoS {s.qos} retain {s.retain}, the contract says {mqtt['qos']} {mqtt['retain']}")
        if channel in REQUEST_CHANNELS:
            reply = ADDRESSES[REQUEST_CHANNELS[channel]]
            if not (s.response_topic and reply.match(s.response_topic) and s.correlation):
                problems.append(f"{s.topic}: response topic {s.response_topic!r} / correlation {s.correlation!r}")
        if isinstance(mqtt.get("messageExpiryInterval"), dict):
            if not Draft7Validator(mqtt["messageExpiryInterval"]).is_valid(s.expiry):
                problems.append(f"{s.topic}: message expiry {s.expiry!r}")
        if channel in REQUEST_CHANNELS.values():
            asked = [r for r in rec.seen if r.correlation == s.correlation and r.response_topic == s.topic]
            if not asked:
                problems.append(f"{s.topic}: correlation data {s.correlation!r} answers no request")
    assert not problems, "\n".join(problems)


def test_records_are_numbered_without_holes_and_acked_to_the_last(capture):
    rec, notes = capture
    assert [notes[v]["state"] for v in ("topup", "card_sale", "plan_change")] == ["done"] * 3, notes
    seqs = {s.body()["msg_seq"] for s in rec.on("txn") + rec.on("event")}
    assert seqs == set(range(1, max(seqs) + 1))
    assert max(s.body()["msg_seq"] for s in rec.on("ack")) == max(seqs)
    assert {s.body()["service"] for s in rec.on("txn")} >= {"topup", "card_sale", "plan_change"}


def test_every_command_was_answered_and_the_refusals_name_their_code(capture):
    _, notes = capture
    replies = notes["replies"] + [notes["restart"]]
    assert [r["ok"] for r in replies] == [True] * 7 + [False, False, True], replies
    assert [r["error"]["code"] for r in replies if not r["ok"]] == ["refused", "refused"]
