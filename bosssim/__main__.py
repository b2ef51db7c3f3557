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


EPILOG = """\
BOSS API (what kioskd and halld call): POST /boss/v1/{op} with a JSON body, answered with
{"ok": true, ...} or {"ok": false, "code": ...}. Writes carry an idempotency key: sent twice,
applied once, answered the same.
  reads:  check_number, query_balance, query_plans, query_bill, statement, invoice, verify_password,
          send_sms_code, verify_sms_code, op_status, list_numbers, owner_check, sim_card_data
  writes: credit, pay_bill, change_plan, suspend_number, reserve_number, release_number,
          open_number, replace_sim, register_real_name
  the hall's back office (halld calls these, kiosks never may):
          day_statement {date}          every credit, bill payment and reversal of a business day
                                        (China Standard Time) with its key
          reverse_credit {of, reason, key}  reverse a top-up within the window (default 24 h);
                                        refused window_closed, already_reversed, balance_spent
          commission_statement {month}  the hall's commission (credit 1.5 %, bill 0.5 %, less
                                        reversals), what was moved to its wallet, what is available
          commission_transfer {fen, key}  move commission to the hall's wallet

Control (tests, the demo, a technician's what-if):
  POST /control/fault  {"op": "credit" | "*", "mode": M, "times": 1, "delay": 0.5, "code": "..."}
       M = timeout (hold, apply nothing) | drop_reply (apply, lose the answer) | refuse |
           slow | duplicate (serve twice) | down (close without answering)
  POST /control/clear          forget queued faults
  GET  /control/ledger         every write applied (credits, payments, ...)
  GET  /control/sms/{phone}    SMS codes sent to a number
  POST /control/age            {"key": K, "seconds": S}: the write K looks S seconds older
  POST /control/config         {"reversal_window_s": S}

Seeded subscribers (a new --db): 13800138000 张伟 prepaid; 13912345678 李娜 two unpaid months;
18612345678 陈静; 15000000000 王芳 suspended; 13700000000 赵强 closed.

example:
  bosssim --port 8600 --db /tmp/boss.db &
  curl -s -X POST http://127.0.0.1:8600/boss/v1/query_balance -d '{"phone": "13800138000"}'
  curl -s -X POST http://127.0.0.1:8600/control/fault -d '{"op": "credit", "mode": "timeout", "delay": 2}'
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bosssim", description="BOSS simulator (accounts, plans, bills, credits): "
                                     "prints 'bosssim listening on http://HOST:PORT' when ready",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8600, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", default="bosssim.db", help="SQLite file; seeded with test subscribers when new")
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
