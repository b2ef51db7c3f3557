"""Real-name data (ID text, ID photo, live photo) sealed to the hall's public key before it touches disk.

Why a sealed box (X25519 + XSalsa20-Poly1305, libsodium's crypto_box_seal via PyNaCl): the
kiosk can encrypt with the hall's public key alone and can never decrypt what it sealed, so
a stolen kiosk or SD card gives nothing away. Only the sealed blob is journalled; it travels
in the transaction record (``data.pii``), halld stores it still sealed, and ``halld pii open``
opens it for an authorised person holding the hall's private key.

On the kiosk the blob is purged from the journal and the outbox once the hall has acked the
record (``purge_delivered``): the hall has it, the kiosk no longer needs it.
"""
from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

from hal.protocols.idcard import mask_id_number, mask_name

PURGED = "purged"


class PiiError(ValueError):
    """A key that is not an X25519 key, or a blob that does not open with it."""


def public_key(text: str) -> Any:
    from nacl.public import PublicKey  # lazy: kioskd's start-up imports stay lean

    try:
        raw = bytes.fromhex(text.strip())
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return PublicKey(raw)
    except ValueError as exc:
        raise PiiError(f"hall public key: 64 hex digits expected ({exc})") from None


def new_key_pair() -> tuple[str, str]:
    """(private hex, public hex) for the hall (``halld pii keygen``)."""
    from nacl.public import PrivateKey

    key = PrivateKey.generate()
    return bytes(key).hex(), bytes(key.public_key).hex()


def seal(hall_key: Any, record: dict[str, Any]) -> str:
    """The record (bytes values base64'd) as JSON, sealed, as base64 text for the journal."""
    from nacl.public import SealedBox

    key = public_key(hall_key) if isinstance(hall_key, str) else hall_key
    plain = json.dumps({k: ({"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v)
                        for k, v in record.items()}, ensure_ascii=False).encode()
    return base64.b64encode(SealedBox(key).encrypt(plain)).decode()


def open_sealed(private_hex: str, blob: str) -> dict[str, Any]:
    from nacl.public import PrivateKey, SealedBox

    try:
        box = SealedBox(PrivateKey(bytes.fromhex(private_hex.strip())))
        plain = box.decrypt(base64.b64decode(blob))
    except Exception as exc:  # noqa: BLE001 - nacl raises CryptoError, ValueError, TypeError
        raise PiiError(f"does not open with this key: {type(exc).__name__}") from None
    record = json.loads(plain)
    return {k: (base64.b64decode(v["b64"]) if isinstance(v, dict) and "b64" in v else v) for k, v in record.items()}


def id_record(card: Any, live_jpeg: bytes | None) -> dict[str, Any]:
    """What is sealed for one customer: every text field of the card, its photo, the live photo."""
    t = card.text
    return {"name": t.name, "gender": t.gender, "nation": t.nation, "birth": t.birth, "address": t.address,
            "id_number": t.id_number, "authority": t.authority, "valid_from": t.valid_from,
            "valid_to": t.valid_to, "id_photo_wlt": card.photo_wlt, "live_photo_jpeg": live_jpeg or b""}


def masked(card: Any) -> dict[str, str]:
    """What may be shown, logged and printed: 张*, 110105********002X."""
    return {"name": mask_name(card.text.name), "id_number": mask_id_number(card.text.id_number)}


def purge_delivered(conn: sqlite3.Connection) -> int:
    """Replace the sealed blob by "purged" in delivered outbox rows and their finished transactions."""
    n = 0
    rows = conn.execute("SELECT seq, payload FROM outbox WHERE delivered = 1 AND topic = 'txn'"
                        " AND payload LIKE '%\"pii\": \"%' AND payload NOT LIKE '%\"pii\": \"purged\"%'").fetchall()
    for row in rows:
        payload = json.loads(row["payload"])
        data = payload.get("data") or {}
        if data.get("pii") in (None, PURGED):
            continue
        data["pii"] = PURGED
        conn.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (json.dumps(payload, ensure_ascii=False), row["seq"]))
        txn = conn.execute("SELECT data FROM transactions WHERE id = ?", (payload.get("txn"),)).fetchone()
        if txn is not None:
            tdata = json.loads(txn["data"])
            tdata["pii"] = PURGED
            conn.execute("UPDATE transactions SET data = ? WHERE id = ?",
                         (json.dumps(tdata, ensure_ascii=False), payload.get("txn")))
        n += 1
    return n


__all__ = ["PURGED", "PiiError", "id_record", "masked", "new_key_pair", "open_sealed", "public_key",
           "purge_delivered", "seal"]
