"""`halld user ...`: staff accounts and API tokens, straight in the hall database (halld may run).

    halld user add NAME --role admin|operator|viewer|auditor   (password asked twice, or --password-stdin)
    halld user token NAME [--label L]   prints a new API token once: export HALLD_TOKEN=... for `halld cmd`
    halld user list | role NAME ROLE | disable NAME | enable NAME | passwd NAME | revoke NAME

`add` creates the database and its tables when there is none yet, so the first admin can be made
before the first `halld serve`. Each change is in the audit log as done by `cli:<login user>`.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from . import auth
from .db import connect


def add_parser(sub: argparse._SubParsersAction, db_default: str) -> None:
    p = sub.add_parser("user", help="staff accounts and API tokens (add, token, list, role, disable, passwd)")
    p.add_argument("action", choices=["add", "token", "list", "role", "disable", "enable", "passwd", "revoke"])
    p.add_argument("name", nargs="?")
    p.add_argument("new_role", nargs="?", metavar="ROLE", help="role: the new role")
    p.add_argument("--role", choices=list(auth.ROLES), help="add: the account's role")
    p.add_argument("--label", default="cli", help="token: what the token is for")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--db", default=db_default, help="SQLite path or postgresql:// URL (env HALLD_DB)")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise auth.AuthError("the two passwords differ")
    return first


def main(args: argparse.Namespace) -> int:
    who = f"cli:{_login()}"
    if args.action != "list" and not args.name:
        print(f"halld user {args.action} NAME", file=sys.stderr)
        return 2
    db = connect(args.db)  # creates the schema (and the database) when missing
    try:
        db.execute("SELECT 1")
        with db.transaction():
            auth.create_schema(db)
        if args.action == "list":
            for u in auth.users(db):
                state = "disabled" if u["disabled"] else "locked" if u["locked"] else "active"
                print(f"{u['name']:<20} {u['role']:<9} {state}")
            return 0
        if args.action == "add":
            if not args.role:
                print("halld user add NAME --role admin|operator|viewer|auditor", file=sys.stderr)
                return 2
            pw_hash = auth.hash_password(_password(args))
            with db.transaction():
                auth.add_user(db, args.name, args.role, pw_hash, who)
            print(f"staff account {args.name} ({args.role}) added")
        elif args.action == "token":
            with db.transaction():
                print(auth.new_token(db, args.name, args.label, who))
        elif args.action == "revoke":
            with db.transaction():
                print(f"{auth.revoke_tokens(db, args.name, who)} token(s) revoked")
        elif args.action == "passwd":
            pw_hash = auth.hash_password(_password(args))
            with db.transaction():
                auth.set_user(db, args.name, who, pw_hash=pw_hash)
        elif args.action == "role":
            with db.transaction():
                auth.set_user(db, args.name, who, role=args.new_role or args.role or "")
        else:
            with db.transaction():
                auth.set_user(db, args.name, who, disabled=args.action == "disable")
        return 0
    except auth.AuthError as exc:
        print(f"halld user {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()


def _login() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")
