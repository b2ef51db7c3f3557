"""What one hostile kiosk (a stolen certificate) does to the hall broker's memory (issue 16 case 1).

    python bench/hostile_broker.py [--retained 20] [--size-mb 5] [--record-mb 20]

The kiosk publishes ``--retained`` retained messages of ``--size-mb`` on subtopics of its
``cmdresp/`` leaf, then one ``--record-mb`` record, reconnecting whenever the broker drops it.
Run against two brokers in the same run: a baseline with the hall's config before the limits (no
max_packet_size / max_queued_bytes / memory_limit, `cmdresp/#` writable) and the hall's config
now (hall/mosquitto_secure.py). Prints mosquitto's resident memory before and after, what halld
would be sent again on reconnect, and the ratio of the growths. Numbers, never a pass/fail.
"""
from __future__ import annotations

import argparse
import logging
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # paho logs each cut-off connection

import aiomqtt  # noqa: E402

from hall import mosquitto_secure as ms  # noqa: E402
from provisioning.certs import mint_ca, mint_client, mint_server, tls_context  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def restart_as_before(broker: ms.SecureBroker) -> None:
    """The broker's files as they were before issue 16 (no limits, cmdresp/# writable), restarted."""
    broker.stop()
    conf = broker.workdir / "mosquitto.conf"
    lines = [l for l in conf.read_text().splitlines()
             if not l.startswith(("max_packet_size", "max_queued_bytes", "memory_limit", "persistent_client_expiration"))]
    conf.write_text("\n".join(lines) + "\n")
    broker.acl_file.write_text(broker.acl_file.read_text().replace("/cmdresp/halld", "/cmdresp/#"))
    broker.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the baseline broker did not start") from None
            time.sleep(0.01)


async def attack(port: int, pki: Path, retained: int, size: int, record: int) -> int:
    """Returns how many messages were refused by a disconnect."""
    refused = 0

    async def publish(topic: str, payload: bytes, retain: bool) -> None:
        nonlocal refused
        try:
            async with aiomqtt.Client("localhost", port, identifier="K1", protocol=aiomqtt.ProtocolVersion.V5,
                                      tls_context=tls_context(pki / "ca.crt", pki / "K1.crt", pki / "K1.key"),
                                      timeout=30) as k1:
                # a broker that cuts the kiosk off leaves paho's publish waiting: 15 s is plenty for 20 MB on loopback
                await k1.publish(topic, payload, qos=1, retain=retain, timeout=15)
        except aiomqtt.MqttError:
            refused += 1

    for i in range(retained):
        await publish(f"kiosk/v1/H1/K1/cmdresp/junk-{i}", os.urandom(size), True)
    await publish("kiosk/v1/H1/K1/txn", os.urandom(record), False)
    return refused


async def resent_to_halld(port: int, pki: Path) -> tuple[int, int]:
    """What a reconnecting halld is sent again: retained messages under cmdresp/ (count, bytes)."""
    count = total = 0
    async with aiomqtt.Client("localhost", port, identifier="halld", protocol=aiomqtt.ProtocolVersion.V5,
                              tls_context=tls_context(pki / "ca.crt", pki / "halld.crt", pki / "halld.key"),
                              timeout=30) as hall:
        await hall.subscribe("kiosk/v1/+/+/cmdresp/#", qos=1)
        await hall.subscribe("kiosk/v1/H1/K1/status", qos=1)
        await hall.subscribe("kiosk/v1/H1/K1/ack", qos=1)
        await hall.publish("kiosk/v1/H1/K1/ack", b"sentinel", qos=1)
        async with asyncio.timeout(60):
            async for m in hall.messages:
                if m.payload == b"sentinel":
                    break
                count += 1
                total += len(m.payload)
    return count, total


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--retained", type=int, default=20)
    ap.add_argument("--size-mb", type=float, default=5)
    ap.add_argument("--record-mb", type=float, default=20)
    args = ap.parse_args()
    size, record = int(args.size_mb * 2 ** 20), int(args.record_mb * 2 ** 20)
    growth = {}
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        ca = mint_ca(pki)
        server = mint_server(ca, pki, ["localhost"])
        for cn in ("halld", "K1"):
            mint_client(ca, pki, cn)
        for name in ("before issue 16", "the hall's config"):
            broker = ms.start_secure_broker(Path(tmp) / name.replace(" ", "-"), ca, server, {"H1": ["K1"]})
            if name == "before issue 16":
                restart_as_before(broker)
            try:
                before = rss_mb(broker.proc.pid)
                refused = await attack(broker.port, pki, args.retained, size, record)
                after = rss_mb(broker.proc.pid)
                count, total = await resent_to_halld(broker.port, pki)
            finally:
                broker.stop()
            growth[name] = after - before
            print(f"{name:>18}: mosquitto RSS {before:.1f} -> {after:.1f} MB (+{after - before:.1f}); "
                  f"{refused} of {args.retained + 1} publishes cut off; a reconnecting halld is sent "
                  f"{count} retained messages, {total / 2 ** 20:.1f} MB")
    print(f"growth ratio now/before: {growth['the hall' + chr(39) + 's config'] / max(growth['before issue 16'], 0.1):.3f}")


if __name__ == "__main__":
    asyncio.run(main())
