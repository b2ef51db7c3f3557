"""`kioskctl`: the technician's view of a running kioskd, over its local unix socket.

    kioskctl status                 state, devices, outbox depth
    kioskctl devices                devices with their health
    kioskctl test printer|dispenser|modem|panel|NAME
    kioskctl emu NAME CMD [key=value ...]     --simulate only: script an emulator
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hal.emulators.control import call_sync
from hal.emulators.model import ControlError

from .config import DEFAULT_PATH, ConfigError, load
from .daemon import SIMULATED_CONFIG


def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return args.socket
    path = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else SIMULATED_CONFIG)
    return str(Path(load(path).kiosk.runtime_dir) / "kioskd.sock")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_status(status: dict[str, Any]) -> None:
    print(f"kiosk {status['kiosk']} (hall {status['hall']})  state: {status['state']}  "
          f"session {status['session']}  firmware {status['firmware']}  config {status['config_hash']}")
    print(f"hall link: {'up' if status['hall_link'] else 'down'}  outbox: {status['outbox']}  "
          f"uptime: {status['uptime_s']} s{'  (simulated)' if status['simulate'] else ''}")
    _print_devices(status["devices"])


def _print_devices(devices: dict[str, Any]) -> None:
    if not devices:
        print("no devices configured")
    for name, d in devices.items():
        print(f"  {name:<12} {d['driver']:<16} {d['health']:<9} {d.get('detail', '')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kioskctl")
    parser.add_argument("--config", type=Path, help="kiosk.toml, to find the socket")
    parser.add_argument("--socket", help="kioskd's socket (default: {runtime_dir}/kioskd.sock)")
    parser.add_argument("--json", action="store_true", help="print raw JSON")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status")
    sub.add_parser("devices")
    test = sub.add_parser("test")
    test.add_argument("device")
    emu = sub.add_parser("emu")
    emu.add_argument("name")
    emu.add_argument("emu_cmd")
    emu.add_argument("args", nargs="*", metavar="key=value")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sock = _socket(args)
        if args.cmd == "emu":
            kv = dict(a.split("=", 1) for a in args.args)
            result = call_sync(sock, "emu", name=args.name, emu_cmd=args.emu_cmd,
                               **{k: _value(v) for k, v in kv.items()})
        elif args.cmd == "test":
            result = call_sync(sock, "test", device=args.device)
        else:
            result = call_sync(sock, args.cmd)
    except ConfigError as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return 2
    except (OSError, ControlError, ValueError) as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    elif args.cmd == "status":
        _print_status(result)
    elif args.cmd == "devices":
        _print_devices(result)
    else:
        print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
