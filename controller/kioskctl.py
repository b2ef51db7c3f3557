"""`kioskctl`: the technician's view of a running kioskd, over its local unix socket.

Exit codes say what happened, so scripts and the rig can trust them: 0 done; 1 kioskd answered
"no" (a device test FAILED, an unknown device, an emulator refusing a command); 2 the command line
or the config file is wrong; 3 kioskd cannot be reached at its socket (named in the message).
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from hal.emulators.control import call_sync
from hal.emulators.model import ControlError

from .config import DEFAULT_PATH, ConfigError, load
from .daemon import SIMULATED_CONFIG

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

EPILOG = """\
exit codes: 0 done; 1 kioskd answered no (a test FAILED, unknown device, emulator error);
2 bad command line or config; 3 kioskd not reachable at its socket.

examples:
  kioskctl status
  kioskctl devices
  kioskctl test printer              prints a test receipt; exit 1 if it FAILED
  kioskctl --json status             the same facts as JSON, for scripts
  kioskctl --socket var/demo/SIM-0001/run/kioskd.sock status
"""

EMU_HELP = """\
Script a device emulator of a kioskd started with --simulate, as a customer or a fault would:
the command goes to the emulator's control socket ({runtime_dir}/emu-NAME.sock) through kioskd.

emulators (NAME): cctalk (coin acceptor, bill validator, hopper on one bus), escpos (printer),
crt571 (card dispenser), modem (GSM modem), plus any other sim: port in the config.
Every emulator takes: ping, state, mute, unmute, corrupt count=N, inject hex=...
Device commands, e.g.:
  cctalk  insert_coin value=100 | insert_bill value=2000 | jam_bill | clear_jam | hopper_empty_after count=3
  escpos  paper_out | paper_ok | open_cover | receipts | render_png file=/tmp/last.png
  crt571  set_stock count=3 | jam | clear_jam | take_card
  modem   set_signal rssi=5 | set_registered registered=false | fail_next code=42 | sent
Values are JSON when they parse as JSON (100, true, "text"), else plain text.
The full list of commands and what they do: docs/emulators.md.

examples:
  kioskctl emu cctalk insert_bill value=2000
  kioskctl emu escpos paper_out
  kioskctl --json emu cctalk state
"""


class Unreachable(Exception):
    """kioskd is not there to ask; the message names the socket."""


def _socket(args: argparse.Namespace) -> tuple[str, str]:
    """kioskd's socket and where that answer came from (for messages)."""
    if args.socket:
        return args.socket, "--socket"
    if args.config:
        path, why = args.config, f"runtime_dir of {args.config}"
    elif DEFAULT_PATH.exists():
        path, why = DEFAULT_PATH, f"runtime_dir of {DEFAULT_PATH}"
    else:
        path, why = SIMULATED_CONFIG, f"runtime_dir of the simulated kiosk; {DEFAULT_PATH} does not exist"
    return str((Path(load(path).kiosk.runtime_dir) / "kioskd.sock").absolute()), why


def _call(sock: str, why: str, cmd: str, **args: Any) -> Any:
    try:
        return call_sync(sock, cmd, **args)
    except FileNotFoundError:
        raise Unreachable(f"no kioskd socket at {sock} ({why}): is kioskd running? "
                          "Give --socket PATH or --config FILE") from None
    except ConnectionRefusedError:
        raise Unreachable(f"nothing listens on {sock} ({why}): kioskd is not running (a stale socket)") from None
    except PermissionError:
        raise Unreachable(f"no permission to use {sock}: run as the kiosk user or root") from None
    except ValueError:
        raise Unreachable(f"kioskd at {sock} closed the connection without an answer") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTSOCK, errno.ECONNRESET, errno.EPIPE):
            raise Unreachable(f"cannot talk to kioskd at {sock}: {exc.strerror}") from None
        raise Unreachable(f"cannot reach kioskd at {sock} ({why}): {exc}") from None


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Columns as wide as their widest cell (a Chinese character counts 2); empty cells show "-"."""
    cells = [[str(c) if c not in (None, "") else "-" for c in row] for row in rows]
    widths = [max(_width(r[i]) for r in [headers, *cells]) for i in range(len(headers))]
    return "\n".join("  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)).rstrip()
                     for r in [headers, *cells])


def _listed(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _print_status(status: dict[str, Any]) -> None:
    hall = "up" if status["hall_link"] else "down"
    if status["hall_link"] and status.get("hall_online") is False:
        hall += " (hall offline: records wait in the outbox)"
    print(f"kiosk     {status['kiosk']} (hall {status['hall']})")
    print(f"state     {status['state']}   session {status['session']}   firmware {status['firmware']}   "
          f"config {status['config_hash']}{'   simulated' if status['simulate'] else ''}")
    print(f"hall link {hall}   outbox {status['outbox']}   uptime {status['uptime_s']} s")
    print(f"cash      {'INHIBITED by the hall (inhibit_cash)' if status.get('cash_inhibited') else 'accepted'}")
    print(f"disabled  {_listed(status.get('disabled_services', []))}")
    print(f"alarms    {_listed(status.get('alarms', []))}")
    print()
    _print_devices(status["devices"])


def _print_devices(devices: dict[str, Any]) -> None:
    if not devices:
        print("devices: none configured")
        return
    print(table(["DEVICE", "DRIVER", "KIND", "HEALTH", "DETAIL"],
                [[name, d.get("driver"), d.get("kind"), d.get("health"), d.get("detail")] for name, d in devices.items()]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kioskctl", description="The technician's view of a running kioskd.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="kiosk.toml, to find the socket (default /etc/kiosk/kiosk.toml, "
                        "else the simulated kiosk's)")
    parser.add_argument("--socket", help="kioskd's socket (default: {runtime_dir}/kioskd.sock of the config)")
    parser.add_argument("--json", action="store_true",
                        help="print kioskd's answer as JSON (every field, machine-readable) instead of a table")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("status", help="state, hall link, outbox, cash, disabled services, alarms, devices")
    sub.add_parser("devices", help="every device: driver, kind, health")
    test = sub.add_parser("test", help="exercise a device (exit 1 if it FAILED)",
                          description="Run a device's self test: the printer prints a test receipt, the "
                          "dispenser reports its stock, the modem its signal. Exit 1 if any test FAILED.")
    test.add_argument("device", help="a device name, kind or driver: printer, dispenser, modem, panel, coin, ...")
    emu = sub.add_parser("emu", help="--simulate only: script an emulator (insert a bill, paper out, ...)",
                         description=EMU_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    emu.add_argument("name", help="the emulator: cctalk, escpos, crt571, modem, ...")
    emu.add_argument("emu_cmd", metavar="CMD", help="the emulator's command: state, insert_bill, paper_out, ...")
    emu.add_argument("args", nargs="*", metavar="key=value", help="the command's arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sock, why = _socket(args)
        if args.cmd == "emu":
            bad = [a for a in args.args if "=" not in a]
            if bad:
                print(f"kioskctl: emu arguments are key=value, not {' '.join(bad)}", file=sys.stderr)
                return EXIT_USAGE
            kv = dict(a.split("=", 1) for a in args.args)
            result = _call(sock, why, "emu", name=args.name, emu_cmd=args.emu_cmd, **{k: _value(v) for k, v in kv.items()})
        elif args.cmd == "test":
            result = _call(sock, why, "test", device=args.device)
        else:
            result = _call(sock, why, args.cmd)
    except ConfigError as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"kioskctl: kioskd says: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    elif args.cmd == "status":
        _print_status(result)
    elif args.cmd == "devices":
        _print_devices(result)
    elif args.cmd == "test":
        for r in result:
            print(r["result"])
    else:
        print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, indent=2))
    if args.cmd == "test" and not all(r["ok"] for r in result):
        return EXIT_REFUSED
    return EXIT_OK


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


if __name__ == "__main__":
    sys.exit(main())
