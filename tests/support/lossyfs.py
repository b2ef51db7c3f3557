"""A FUSE filesystem that loses what was not fsync'd when the power goes: the power-loss test bed.

Why: killing a process proves nothing about fsync, because the kernel's page cache survives the
kill and writes everything out later. A power cut does not: only what ``fsync``/``fdatasync``
made durable is there afterwards. This filesystem plays the disk under a power cut, strictly by
POSIX (harsher than ext4's habits):

- A file's writes and truncates live in memory (the page cache) until ``fsync``/``fdatasync`` on
  that file; then its content and size become durable. ``close``/``flush`` make nothing durable.
- Names are directory entries: a ``create``, ``mkdir``, ``rename`` or ``unlink`` is durable only
  after ``fsync`` of the directory that holds the entry (for a rename: the directory the name went
  to makes the new name durable; the one it left makes the removal durable). ``fsync`` of a file
  does not make its name durable, and a durable name whose file was never fsync'd shows an empty
  file after the crash (what ext4 without ``auto_da_alloc`` shows).
- ``crash`` (on the control socket) cuts the power: from then on every operation fails with EIO,
  and the backing directory holds exactly the durable state, so a new mount of it is the disk
  after reboot. The backing directory is updated at each fsync, so even SIGKILL of this process
  is a faithful power cut (a fsync in progress may land partly, as on a real disk).

Not modelled: hard links (EPERM), symlinks, extended attributes, and ordering guarantees of real
journalling filesystems. POSIX byte-range locks are handled by the kernel (no ``lock`` op), which
is right for one machine; SQLite's ``-shm`` goes through the kernel's shared page cache as usual.

Run: ``python lossyfs.py BACKING MOUNTPOINT --control SOCK`` (needs /dev/fuse, apt fuse3 libfuse2,
pip fusepy). From tests use :class:`LossyMount`. Control protocol: one line in, one JSON line out;
``ping``, ``stats``, ``crash``.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path


class Node:
    """An inode: the live (cached) state and the durable state side by side."""

    __slots__ = ("is_dir", "mode", "data", "synced", "dirty", "entries", "synced_entries", "mtime", "ctime")

    def __init__(self, is_dir: bool, mode: int, content: bytes = b"", durable: bool = False) -> None:
        self.is_dir = is_dir
        self.mode = mode & 0o7777
        self.data = bytearray(content)  # what readers see now
        self.synced = bytearray(content if durable else b"")  # what a crash leaves
        self.dirty: list[tuple[int, int]] = []  # byte ranges written since the last fsync
        self.entries: dict[str, Node] = {}  # live directory entries
        self.synced_entries: dict[str, Node] = {}  # durable directory entries
        self.mtime = self.ctime = time.time_ns()


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _load(path: Path) -> Node:
    """The disk after reboot: everything in the backing directory is durable."""
    node = Node(True, path.stat().st_mode, durable=True)
    for child in sorted(path.iterdir()):
        if child.is_dir():
            sub = _load(child)
        else:
            sub = Node(False, child.stat().st_mode, child.read_bytes(), durable=True)
        node.entries[child.name] = node.synced_entries[child.name] = sub
    return node


_TRACED = {"create", "mkdir", "unlink", "rmdir", "rename", "truncate", "fsync", "fsyncdir"}


def make_operations(backing: str, control: str | None = None, trace: str | None = None):
    """The fusepy Operations object (imported here so the launcher side needs no fusepy)."""
    from fuse import FuseOSError, Operations

    class LossyFS(Operations):
        use_ns = True

        def __init__(self) -> None:
            self.backing = Path(backing)
            self.root = _load(self.backing)
            self.mutex = threading.RLock()
            self.handles: dict[int, Node] = {}
            self.next_fh = 1
            self.crashed = False
            self.stats = {"writes": 0, "fsync": 0, "fsyncdir": 0, "renames": 0, "unlinks": 0, "creates": 0,
                          "fsync_by_name": {}}

        # -- operations: every one runs under the lock and fails once the power is off ---------------
        def __call__(self, op, *args):
            with self.mutex:
                if self.crashed:
                    raise FuseOSError(errno.EIO)
                if trace and op in _TRACED:
                    with open(trace, "a") as log:
                        log.write(f"{op} {args[0]}{' -> ' + args[1] if op == 'rename' else ''}\n")
                return super().__call__(op, *args)

        def _lookup(self, path: str) -> Node:
            node = self.root
            for part in path.strip("/").split("/"):
                if not part:
                    continue
                if not node.is_dir:
                    raise FuseOSError(errno.ENOTDIR)
                try:
                    node = node.entries[part]
                except KeyError:
                    raise FuseOSError(errno.ENOENT) from None
            return node

        def _parent(self, path: str) -> tuple[Node, str]:
            head, _, name = path.rstrip("/").rpartition("/")
            parent = self._lookup(head or "/")
            if not parent.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return parent, name

        def _node(self, path: str | None, fh: int | None) -> Node:
            if fh is not None and fh in self.handles:
                return self.handles[fh]
            if path is None:
                raise FuseOSError(errno.EBADF)
            return self._lookup(path)

        def _handle(self, node: Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh

        def getattr(self, path, fh=None):
            node = self._node(path, fh)
            kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
            nlink = 2 + sum(c.is_dir for c in node.entries.values()) if node.is_dir else 1
            return {"st_mode": kind | node.mode, "st_nlink": nlink, "st_size": len(node.data),
                    "st_uid": os.getuid(), "st_gid": os.getgid(), "st_blocks": (len(node.data) + 511) // 512,
                    "st_atime": node.mtime, "st_mtime": node.mtime, "st_ctime": node.ctime}

        def readdir(self, path, fh):
            return [".", "..", *self._node(path, fh).entries]

        def opendir(self, path):
            node = self._lookup(path)
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return self._handle(node)

        def releasedir(self, path, fh):
            self.handles.pop(fh, None)

        def mkdir(self, path, mode):
            parent, name = self._parent(path)
            if name in parent.entries:
                raise FuseOSError(errno.EEXIST)
            parent.entries[name] = Node(True, mode)
            self.stats["creates"] += 1

        def rmdir(self, path):
            parent, name = self._parent(path)
            node = self._lookup(path)
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            if node.entries:
                raise FuseOSError(errno.ENOTEMPTY)
            del parent.entries[name]

        def create(self, path, mode, fi=None):
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                node = parent.entries[name] = Node(False, mode)
                self.stats["creates"] += 1
            return self._handle(node)

        def open(self, path, flags):
            node = self._lookup(path)
            if node.is_dir:
                raise FuseOSError(errno.EISDIR)
            if flags & os.O_TRUNC:
                self._truncate(node, 0)
            return self._handle(node)

        def release(self, path, fh):
            self.handles.pop(fh, None)  # closing a file makes nothing durable

        def flush(self, path, fh):
            return 0

        def read(self, path, size, offset, fh):
            node = self._node(path, fh)
            return bytes(node.data[offset:offset + size])

        def write(self, path, data, offset, fh):
            node = self._node(path, fh)
            end = offset + len(data)
            if offset > len(node.data):
                node.dirty.append((len(node.data), offset))
                node.data.extend(bytes(offset - len(node.data)))
            node.data[offset:end] = data
            node.dirty.append((offset, end))
            if len(node.dirty) > 4096:
                node.dirty = _merge(node.dirty)
            node.mtime = time.time_ns()
            self.stats["writes"] += 1
            return len(data)

        def _truncate(self, node: Node, length: int) -> None:
            old = len(node.data)
            if length < old:
                del node.data[length:]
            else:
                node.data.extend(bytes(length - old))
                node.dirty.append((old, length))
            node.mtime = time.time_ns()

        def truncate(self, path, length, fh=None):
            self._truncate(self._node(path, fh), length)

        def unlink(self, path):
            parent, name = self._parent(path)
            node = self._lookup(path)
            if node.is_dir:
                raise FuseOSError(errno.EISDIR)
            del parent.entries[name]  # still readable through open handles, still durable until fsyncdir
            self.stats["unlinks"] += 1

        def rename(self, old, new):
            src_parent, src_name = self._parent(old)
            node = self._lookup(old)
            dst_parent, dst_name = self._parent(new)
            target = dst_parent.entries.get(dst_name)
            if target is not None and target.is_dir and target.entries:
                raise FuseOSError(errno.ENOTEMPTY)
            del src_parent.entries[src_name]
            dst_parent.entries[dst_name] = node
            self.stats["renames"] += 1

        def link(self, target, source):
            raise FuseOSError(errno.EPERM)  # not modelled

        def symlink(self, target, source):
            raise FuseOSError(errno.EPERM)  # not modelled

        def chmod(self, path, mode):
            node = self._lookup(path)
            node.mode = mode & 0o7777
            node.ctime = time.time_ns()

        def chown(self, path, uid, gid):
            return 0

        def utimens(self, path, times=None):
            node = self._lookup(path)
            node.mtime = times[1] if times else time.time_ns()

        def statfs(self, path):
            return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20, "f_bfree": 1 << 19,
                    "f_bavail": 1 << 19, "f_files": 1 << 16, "f_ffree": 1 << 15, "f_namemax": 255}

        # -- durability -----------------------------------------------------------------------------
        def fsync(self, path, datasync, fh):
            node = self._node(path, fh)
            changed = bool(node.dirty) or len(node.data) != len(node.synced)
            self._sync_file(node)
            self.stats["fsync"] += 1
            if changed:  # per file name: fsyncs that made new data durable (a checkpoint of journal.db, ...)
                name = (path or "?").rsplit("/", 1)[-1]
                self.stats["fsync_by_name"][name] = self.stats["fsync_by_name"].get(name, 0) + 1

        def fsyncdir(self, path, datasync, fh):
            node = self._node(path, fh)
            if node.is_dir:
                self._sync_dir(node)
                self.stats["fsyncdir"] += 1

        def _durable_paths(self, target: Node) -> list[Path]:
            """Where ``target`` is reachable on the durable tree (it may be nowhere yet)."""
            if target is self.root:
                return [self.backing]
            out, seen = [], set()

            def walk(node: Node, at: Path) -> None:
                if id(node) in seen:  # a cycle only a crash-mid-rename of directories could build
                    return
                seen.add(id(node))
                for name, child in node.synced_entries.items():
                    if child is target:
                        out.append(at / name)
                    if child.is_dir:
                        walk(child, at / name)

            walk(self.root, self.backing)
            return out

        def _sync_file(self, node: Node) -> None:
            if node.is_dir:
                return self._sync_dir(node)
            size = len(node.data)
            ranges = [(a, min(b, size)) for a, b in _merge(node.dirty) if a < size]
            del node.synced[size:]
            node.synced.extend(bytes(size - len(node.synced)))
            for a, b in ranges:
                node.synced[a:b] = node.data[a:b]
            node.dirty = []
            for path in self._durable_paths(node):
                with open(path, "r+b") as f:  # the backing copy equals the old synced content
                    for a, b in ranges:
                        f.seek(a)
                        f.write(node.synced[a:b])
                    f.truncate(size)

        def _sync_dir(self, node: Node) -> None:
            old, new = node.synced_entries, dict(node.entries)
            node.synced_entries = new
            for base in self._durable_paths(node):
                for name, child in old.items():
                    if new.get(name) is not child:
                        _remove(base / name)
                for name, child in new.items():
                    if old.get(name) is not child:
                        _materialise(child, base / name)

        # -- the power switch -----------------------------------------------------------------------
        def init(self, path):  # the kernel's INIT is answered: the mount is live, take commands
            if control:
                _serve_control(self, control)

        def control(self, line: str) -> dict:
            with self.mutex:
                if line == "crash":
                    self.crashed = True
                return {"ok": True, "crashed": self.crashed, **self.stats}

    return LossyFS()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _materialise(node: Node, path: Path) -> None:
    """A name just became durable: put the node's durable state there (its content, or its entries)."""
    _remove(path)
    if node.is_dir:
        path.mkdir()
        for name, child in node.synced_entries.items():
            _materialise(child, path / name)
    else:
        path.write_bytes(bytes(node.synced))


def _serve_control(fs, sock_path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(4)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            with conn, conn.makefile("rw") as f:
                for line in f:
                    f.write(json.dumps(fs.control(line.strip())) + "\n")
                    f.flush()

    threading.Thread(target=serve, name="lossyfs-control", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    import argparse

    from fuse import FUSE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", required=True, help="unix socket for ping/stats/crash")
    p.add_argument("--trace", help="append create/rename/unlink/truncate/fsync/fsyncdir to this file")
    args = p.parse_args(argv)
    fs = make_operations(args.backing, args.control, args.trace)
    # hard_remove: unlink really unlinks (no .fuse_hidden renames); open handles keep the inode.
    # Timeouts 0: the kernel asks us for every lookup, so no stale name survives a rename.
    FUSE(fs, args.mountpoint, foreground=True, nothreads=False, hard_remove=True, fsname="lossyfs",
         subtype="lossyfs", attr_timeout=0, entry_timeout=0, negative_timeout=0)


# -- the test side: a mount in its own process ----------------------------------------------------

class LossyMount:
    """``with LossyMount(backing, mnt) as m: ...; m.crash()``; then mount ``backing`` again.

    The filesystem runs in its own process; ``crash()`` returns once the power is off (every
    operation after it fails), and leaving the block unmounts it (``fusermount3 -u``).
    """

    def __init__(self, backing: Path, mountpoint: Path, timeout: float = 10.0, trace: Path | None = None) -> None:
        self.backing, self.mountpoint, self.timeout = Path(backing), Path(mountpoint), timeout
        self.trace = trace
        self.control_path = str(self.mountpoint.parent / f".{self.mountpoint.name}.ctl")
        self.proc: subprocess.Popen | None = None
        self.log_path = self.mountpoint.parent / f".{self.mountpoint.name}.log"

    def start(self) -> "LossyMount":
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.control_path):
            os.unlink(self.control_path)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.backing), str(self.mountpoint), "--control", self.control_path,
             *(["--trace", str(self.trace)] if self.trace else [])],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lossyfs exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if self.call("ping")["ok"] and os.path.ismount(self.mountpoint):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"lossyfs did not mount {self.mountpoint}")
            time.sleep(0.01)  # polling for a socket file; no event to wait on across processes

    def call(self, command: str) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            s.connect(self.control_path)
            s.sendall(command.encode() + b"\n")
            return json.loads(s.makefile().readline())

    def crash(self) -> dict:
        """Cut the power: the backing directory now holds exactly what was fsync'd."""
        return self.call("crash")

    def stats(self) -> dict:
        return self.call("stats")

    def stop(self) -> None:
        if self.proc is None:
            return
        for tool in ("fusermount3", "fusermount"):
            if shutil.which(tool):
                done = subprocess.run([tool, "-u", str(self.mountpoint)], capture_output=True)
                if done.returncode != 0:  # still busy (a killed process's files): detach lazily
                    subprocess.run([tool, "-u", "-z", str(self.mountpoint)], capture_output=True)
                break
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LossyMount":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fuse_unavailable() -> str | None:
    """Why FUSE cannot run here (for a skip reason), or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "no fusermount3/fusermount (apt fuse3)"
    try:
        import fuse  # noqa: F401  (fusepy loads libfuse.so.2 at import)
    except (ImportError, OSError, EnvironmentError) as exc:
        return f"fusepy/libfuse2 not usable: {exc}"
    return None


if __name__ == "__main__":
    main()
