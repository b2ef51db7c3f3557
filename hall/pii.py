"""Real-name data as the hall holds it: sealed in the stored transaction record, opened only on demand.

halld never decrypts on ingest: the blob stays sealed in ``txns.payload`` (``data.pii``).
``halld pii open TXN --key hall.key`` opens one record for an authorised person (the console
issue adds who may); ``halld pii keygen --key hall.key`` makes the key pair whose public half
goes into every kiosk's kiosk.toml (``[identity] hall_public_key``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transactions.pii import PURGED, PiiError, new_key_pair, open_sealed

__all__ = ["PiiError", "keygen", "open_txn"]


def keygen(key_file: str) -> str:
    """Write the private key (mode 0600, never overwritten) and return the public key's hex."""
    private, public = new_key_pair()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private + "\n")
    return public


def open_txn(db: Any, txn: str, key_file: str, out_dir: str | None = None) -> dict[str, Any]:
    rows = db.dicts("SELECT kiosk, payload FROM txns WHERE txn = ?", (txn,))
    if not rows:
        raise PiiError(f"no transaction {txn}")
    blob = (json.loads(rows[0]["payload"]).get("data") or {}).get("pii")
    if not blob or blob == PURGED:
        raise PiiError(f"transaction {txn} carries no real-name data")
    record = open_sealed(Path(key_file).read_text(), blob)
    shown: dict[str, Any] = {"txn": txn, "kiosk": rows[0]["kiosk"]}
    for name, value in record.items():
        if isinstance(value, bytes):
            shown[name] = f"{len(value)} bytes"
            if out_dir and value:
                path = Path(out_dir) / f"{txn}-{name.replace('_jpeg', '.jpg').replace('_wlt', '.wlt')}"
                path.write_bytes(value)
                shown[name] += f" -> {path}"
        else:
            shown[name] = value
    return shown
