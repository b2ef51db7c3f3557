"""``python -m bosssim --port N --db PATH``: prints ``bosssim listening on http://HOST:PORT`` when ready."""
from __future__ import annotations

import argparse
import asyncio
import signal

from .server import start


async def _run(args: argparse.Namespace) -> None:
    runner, _, port = await start(args.db, args.port, args.host)
    print(f"bosssim listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bosssim", description="BOSS simulator (accounts, plans, bills, credits)")
    parser.add_argument("--port", type=int, default=8600, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", default="bosssim.db", help="SQLite file; seeded with test subscribers when new")
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
