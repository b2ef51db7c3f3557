"""A counterfeit SD card as a FUSE file: it claims SIZE bytes but keeps only REAL, wrapping around.

Why: fake-capacity cards are common and behave exactly like this — every write succeeds, and data
past the real capacity overwrites the start. Only reading back what was written shows it, which is
what `kiosk-provision flash` must do. The card is one file, `card`, under the mount point; reads
and writes go straight to this process (direct_io), never to the kernel's page cache.

Run: ``python fakecard.py MOUNTPOINT --size BYTES --real BYTES``; from tests use :class:`FakeCard`.
"""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path


def make_operations(size: int, real: int):
    from fuse import FuseOSError, Operations

    class Card(Operations):
        def __init__(self) -> None:
            self.data = bytearray(real)

        def getattr(self, path, fh=None):
            now = time.time()
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_mtime": now, "st_ctime": now, "st_atime": now}
            if path == "/card":
                return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size, "st_mtime": now,
                        "st_ctime": now, "st_atime": now}
            raise FuseOSError(errno.ENOENT)

        def readdir(self, path, fh):
            return [".", "..", "card"]

        def open(self, path, flags):
            if path != "/card":
                raise FuseOSError(errno.ENOENT)
            return 0

        def _span(self, offset: int, n: int):
            for i in range(n):
                yield i, (offset + i) % real

        def read(self, path, n, offset, fh):
            n = max(0, min(n, size - offset))
            start = offset % real
            if start + n <= real:
                return bytes(self.data[start:start + n])
            return bytes(self.data[j] for _, j in self._span(offset, n))

        def write(self, path, buf, offset, fh):
            if offset + len(buf) > size:
                raise FuseOSError(errno.ENOSPC)
            start = offset % real
            if start + len(buf) <= real:
                self.data[start:start + len(buf)] = buf
            else:
                for i, j in self._span(offset, len(buf)):
                    self.data[j] = buf[i]
            return len(buf)

        def truncate(self, path, length, fh=None):
            if length != size:
                raise FuseOSError(errno.EPERM)  # a card's size does not change

        def fsync(self, path, datasync, fh):
            return 0

        def flush(self, path, fh):
            return 0

    return Card()


def main(argv: list[str] | None = None) -> None:
    import argparse

    from fuse import FUSE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mountpoint")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--real", type=int, required=True)
    a = p.parse_args(argv)
    FUSE(make_operations(a.size, a.real), a.mountpoint, foreground=True, nothreads=True, direct_io=True,
         fsname="fakecard", attr_timeout=0, entry_timeout=0)


class FakeCard:
    """``with FakeCard(mnt, size, real) as card_path: ...``"""

    def __init__(self, mountpoint: Path, size: int, real: int, timeout: float = 10.0) -> None:
        self.mountpoint, self.size, self.real, self.timeout = Path(mountpoint), size, real, timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Path:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.mountpoint), "--size", str(self.size),
                                      "--real", str(self.real)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.timeout
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                raise RuntimeError(f"fakecard exited: {self.proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"fakecard did not mount {self.mountpoint}")
            time.sleep(0.01)  # polling the mount table; no event to wait on across processes
        return self.mountpoint / "card"

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True)
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


if __name__ == "__main__":
    main()
