"""Run one emulator standalone, for the rig or by hand.

    python -m hal.emulators NAME (--serial PATH | --pty | --tcp HOST:PORT) [--control SOCKET|tcp://HOST:PORT]
    python -m hal.emulators usim --vpcd HOST:PORT [--control SOCKET]
    python -m hal.emulators send SOCKET '{"cmd": "insert_coin", "value": 100}'
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tty

from . import EMULATORS, create_model
from .control import call_sync
from .model import ControlError
from .runner import EmulatorRunner


async def _serve(args: argparse.Namespace) -> None:
    if args.vpcd:  # a smart card: it plugs into pcscd's vpcd reader instead of a byte line
        return await _serve_card(args)
    runner = EmulatorRunner(create_model(args.name))
    if args.control:
        await runner.serve_control(args.control)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        await runner.serve_tcp(host or "127.0.0.1", int(port))
        print(f"{args.name}: serving tcp://{host}:{port}", flush=True)
    elif args.pty:
        master, slave = os.openpty()
        tty.setraw(slave)
        runner.attach_fd(master)
        print(f"{args.name}: serving {os.ttyname(slave)}", flush=True)
    else:
        import serial  # the rig: a real port, or one end of a socat pty pair

        port = serial.Serial(args.serial, baudrate=args.baudrate, timeout=0)
        runner.attach_fd(port.fileno())
        print(f"{args.name}: serving {args.serial}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.stop()


async def _serve_card(args: argparse.Namespace) -> None:
    from .usim import UsimCard
    from .vpcd import VpcdSlot

    if args.name != "usim":
        raise SystemExit("--vpcd is for the usim emulator")
    host, _, port = args.vpcd.rpartition(":")
    slot = VpcdSlot(UsimCard(), host or "127.0.0.1", int(port))
    await slot.start()
    if args.control:
        from .control import serve_control
        await serve_control(args.control, slot.control)
    print(f"usim: card for vpcd at {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await slot.stop()


SEND_USAGE = """\
usage: python -m hal.emulators send SOCKET JSON

Send one command to an emulator's control socket and print its result as JSON (exit 1 with the
emulator's words if it refuses). JSON is an object with "cmd" and the command's arguments.
Every emulator takes ping, state, mute, unmute, corrupt {"count"}, inject {"hex"}; the device
commands are listed per emulator in docs/emulators.md.

examples:
  python -m hal.emulators send /tmp/cash.sock '{"cmd": "insert_bill", "value": 2000}'
  python -m hal.emulators send /tmp/printer.sock '{"cmd": "paper_out"}'
  python -m hal.emulators send /tmp/printer.sock '{"cmd": "render_png", "file": "/tmp/last.png"}'
Under kioskd --simulate the sockets are {runtime_dir}/emu-NAME.sock (or use kioskctl emu)."""

EPILOG = """\
examples:
  python -m hal.emulators cctalk --pty --control /tmp/cash.sock            prints the pty path
  python -m hal.emulators escpos --tcp 127.0.0.1:9100 --control /tmp/printer.sock
  python -m hal.emulators k720 --serial /dev/ttyUSB1 --control /tmp/cards.sock
then script it:
  python -m hal.emulators send SOCKET JSON      (python -m hal.emulators send --help)
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["send"]:
        if len(argv) != 3:
            asked = argv[1:2] in (["-h"], ["--help"])
            print(SEND_USAGE, file=sys.stdout if asked else sys.stderr)
            return 0 if asked else 2
        try:
            request = json.loads(argv[2])
            cmd = request.pop("cmd")
            print(json.dumps(call_sync(argv[1], cmd, **request), ensure_ascii=False))
        except (ValueError, KeyError, ControlError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    parser = argparse.ArgumentParser(prog="python -m hal.emulators",
                                     description="Run one device emulator standalone: the device side of its "
                                     "protocol on a serial port, a pty or TCP, scripted over a control socket.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted([*EMULATORS, "usim"]))
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="PATH")
    where.add_argument("--tcp", metavar="HOST:PORT")
    where.add_argument("--pty", action="store_true", help="make a pty pair and print its path")
    where.add_argument("--vpcd", metavar="HOST:PORT", help="usim: plug into pcscd's vpcd reader")
    parser.add_argument("--control", metavar="SOCKET", help="unix socket path, or tcp://HOST:PORT for a rig's "
                        "second machine (no authentication: bench network only)")
    parser.add_argument("--baudrate", type=int, default=9600)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
