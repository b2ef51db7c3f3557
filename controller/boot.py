"""The boot counter: a session id that tells this boot's messages (and its MQTT will) from the last.

Kept in a file next to the journal, written durably (tmp + fsync + rename + fsync dir).
"""
from __future__ import annotations

import os
from pathlib import Path


def next_session(state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "boot"
    try:
        last = int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        last = 0
    session = last + 1
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"{session}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return session
