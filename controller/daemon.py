"""`kioskd`: parse the command line, validate the config, run the kiosk's one asyncio loop.

Config errors are one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_PATH, ConfigError, load

SIMULATED_CONFIG = Path(__file__).with_name("simulated.toml")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kioskd", description="Self-service kiosk controller")
    parser.add_argument("--config", type=Path, help=f"kiosk.toml (default {DEFAULT_PATH}; "
                        "with --simulate and no --config, the built-in simulated kiosk)")
    parser.add_argument("--simulate", action="store_true", help="every device on its emulator")
    parser.add_argument("--settings", type=Path, help="the hall's settings over --config: set_config and "
                        "apply_settings write here, kiosk.toml stays as shipped (the image: "
                        "/var/lib/kiosk/settings.toml; missing is empty)")
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--mqtt-port", type=int, help="override [mqtt] port (demo, tests)")
    parser.add_argument("--boss-url", help="override [boss]: via = \"url\" with this url (demo, tests)")
    parser.add_argument("--identity", type=Path, help="first boot: the card's kiosk-identity.toml; enrol at the "
                        "hall with its token unless already enrolled (controller/enrolment.py)")
    parser.add_argument("--version", action="version", version=f"kioskd {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    path = args.config or (SIMULATED_CONFIG if args.simulate else DEFAULT_PATH)
    try:
        config = load(path, simulate=args.simulate, settings=args.settings)
    except ConfigError as exc:
        print(f"kioskd: config error: {exc}", file=sys.stderr)
        return 2
    if args.mqtt_port:
        import dataclasses

        config = dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, port=args.mqtt_port))
    if args.boss_url:
        import dataclasses

        config = dataclasses.replace(config, boss=dataclasses.replace(config.boss, url=args.boss_url, via="url"))
    if args.check_config:
        print(f"{path}{f' with {args.settings}' if config.settings else ''}: ok ({len(config.devices)} devices, kiosk {config.kiosk.id})")
        return 0
    from . import logs
    from .kiosk import Kiosk

    logs.setup(config.kiosk.log_level)
    # --identity: Kiosk.run enrols first, its screen saying so (controller/enrolment.py)
    return asyncio.run(Kiosk(config, identity=args.identity).run())


if __name__ == "__main__":
    sys.exit(main())
