"""Enrolment: a new kiosk trades its one-time token and a CSR for its fleet client certificate.

Why here and like this: the kiosk makes its private key itself and only its CSR travels, so the
key never leaves the kiosk; the token (written on the SD card by the technician) proves the card
came from us, for one kiosk of one hall, once, before it expires. Only the token's SHA-256 is
stored, so a copy of the database cannot enrol anything.

HTTPS with the broker's server certificate (signed by the fleet CA, which the kiosk got on its
card), POST /enrol with JSON {kiosk, hall, token, csr}:
  200 {"cert": PEM, "ca": PEM}     signed, recorded in `enrolments`, token burnt
  403 {"error": why}               unknown, used (replay), expired or other kiosk's/hall's token,
                                   or a CSR the CA refuses; recorded in `enrol_refusals` and logged
  400 {"error": why}               not JSON / fields missing
GET /updates/NAME.kup: a signed update bundle from --updates-dir, for the kiosks' `update` command
(controller/updater.py streams it into its other root slot and checks the signature itself; the
hall only hands out the bytes).
Token check, signing and burning happen in one database transaction: two kiosks racing with one
token get one certificate between them.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from provisioning.certs import CA, CertError, check_cn, sign_csr

from .db import Database, connect

log = logging.getLogger("halld.enrol")

SCHEMA = """
CREATE TABLE IF NOT EXISTS enrol_tokens (
    token_sha256 TEXT PRIMARY KEY, kiosk TEXT NOT NULL, hall TEXT NOT NULL, issued_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION, used_at DOUBLE PRECISION, used_from TEXT);
CREATE TABLE IF NOT EXISTS enrolments (
    id {serial}, hall TEXT, kiosk TEXT, serial TEXT, not_after DOUBLE PRECISION, at DOUBLE PRECISION, peer TEXT);
CREATE TABLE IF NOT EXISTS enrol_refusals (
    id {serial}, at DOUBLE PRECISION, peer TEXT, kiosk TEXT, hall TEXT, reason TEXT);
"""
DEFAULT_TTL_S = 7 * 86400
MAX_BODY = 16 * 1024


class Refused(Exception):
    """Why an enrolment is refused (sent to the kiosk, logged, recorded)."""


@dataclass(frozen=True)
class EnrolConfig:
    host: str
    port: int  # 0: any free port
    cert_file: str  # the server certificate kiosks verify (fleet CA, SAN = the host they dial)
    key_file: str
    ca_dir: str  # ca.crt + ca.key: the fleet CA that signs
    updates_dir: str = ""  # signed update bundles served at /updates/NAME ("": none)


def schema(db: Database) -> None:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    with db.transaction():
        for statement in SCHEMA.format(serial=serial).split(";"):
            if statement.strip():
                db.execute(statement)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db_url: str, kiosk: str, hall: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A new one-time token for `kiosk` of `hall`; only its hash is kept."""
    check_cn(kiosk)
    check_cn(hall)
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    db = connect(db_url)
    try:
        schema(db)
        with db.transaction():
            db.execute("INSERT INTO enrol_tokens (token_sha256, kiosk, hall, issued_at, expires_at) VALUES (?,?,?,?,?)",
                       (_sha(token), kiosk, hall, now, now + ttl_s))
    finally:
        db.close()
    return token


def enrol(db: Database, ca: CA, body: Any, peer: str, now: float) -> bytes:
    """Check the token, sign the CSR, burn the token, record it; returns the certificate PEM."""
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("kiosk", "hall", "token", "csr")):
        raise ValueError("expected a JSON object with strings kiosk, hall, token, csr")
    kiosk, hall = body["kiosk"], body["hall"]
    with db.transaction():
        row = db.one("SELECT kiosk, hall, expires_at, used_at, used_from FROM enrol_tokens WHERE token_sha256 = ?"
                     + db.for_update, (_sha(body["token"]),))
        if row is None:
            raise Refused("unknown enrolment token")
        t_kiosk, t_hall, expires, used_at, used_from = row
        if used_at is not None:
            raise Refused(f"token already used at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(used_at))} "
                          f"from {used_from} (replay?)")
        if now >= expires:
            raise Refused(f"token expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expires))}")
        if (kiosk, hall) != (t_kiosk, t_hall):
            raise Refused(f"token was issued for kiosk {t_kiosk} of hall {t_hall}, not {kiosk} of {hall}")
        try:
            pem = sign_csr(ca, body["csr"].encode(), kiosk)
        except CertError as exc:
            raise Refused(f"CSR refused: {exc}") from None
        cert = x509.load_pem_x509_certificate(pem)
        db.execute("UPDATE enrol_tokens SET used_at = ?, used_from = ? WHERE token_sha256 = ?",
                   (now, peer, _sha(body["token"])))
        db.execute("INSERT INTO enrolments (hall, kiosk, serial, not_after, at, peer) VALUES (?,?,?,?,?,?)",
                   (hall, kiosk, format(cert.serial_number, "x"), cert.not_valid_after_utc.timestamp(), now, peer))
    return pem


def _refusal(db: Database, peer: str, body: Any, reason: str, now: float) -> None:
    body = body if isinstance(body, dict) else {}
    kiosk, hall = (str(body.get(k, ""))[:64] for k in ("kiosk", "hall"))
    log.warning("enrolment refused for kiosk %r of hall %r from %s: %s", kiosk, hall, peer, reason)
    with db.transaction():
        db.execute("INSERT INTO enrol_refusals (at, peer, kiosk, hall, reason) VALUES (?,?,?,?,?)",
                   (now, peer, kiosk, hall, reason))


class Enrolment:
    """The HTTPS endpoint; one database connection, used on one worker thread at a time."""

    def __init__(self, config: EnrolConfig, db_url: str) -> None:
        self.config = config
        self.ca = CA.load(config.ca_dir)
        self.ca_pem = Path(config.ca_dir, "ca.crt").read_text()
        self.db = connect(db_url)
        schema(self.db)
        self.port: int | None = None
        self._runner: Any = None

    def _handle(self, body: Any, peer: str) -> tuple[int, dict]:
        now = time.time()
        with self.db.lock:
            try:
                pem = enrol(self.db, self.ca, body, peer, now)
            except Refused as exc:
                _refusal(self.db, peer, body, str(exc), now)
                return 403, {"error": str(exc)}
            except ValueError as exc:
                _refusal(self.db, peer, body, f"malformed: {exc}", now)
                return 400, {"error": str(exc)}
        log.info("enrolled kiosk %s of hall %s from %s", body["kiosk"], body["hall"], peer)
        return 200, {"cert": pem.decode(), "ca": self.ca_pem}

    async def _post(self, request: Any) -> Any:
        from aiohttp import web

        peer = request.remote or "?"
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        status, answer = await asyncio.to_thread(self._handle, body, peer)
        return web.json_response(answer, status=status)

    async def _bundle(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["name"]
        path = Path(self.config.updates_dir, name)
        if not self.config.updates_dir or not re.fullmatch(r"[A-Za-z0-9._+~-]+\.kup", name) or not path.is_file():
            raise web.HTTPNotFound(text=f"no update bundle {name!r}\n")
        log.info("update bundle %s to %s", name, request.remote)
        return web.FileResponse(path)

    async def start(self) -> int:
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/enrol", self._post)
        app.router.add_get("/updates/{name}", self._bundle)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.config.cert_file, self.config.key_file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        log.info("enrolment on https://%s:%s/enrol", self.config.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self.db.close)
