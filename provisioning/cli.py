"""`kiosk-provision`: the technician's tool — build an image, personalise it, flash it.

    kiosk-provision image build --out kiosk.img [--simulate]  Debian arm64 image (as root)
    kiosk-provision image bmap kiosk.img                  block map beside the image
    kiosk-provision personalise kiosk.img --kiosk K1 --hall H1 --enrol-url https://hall:8471/enrol \\
                                          --token T --ca ca.crt
    kiosk-provision flash kiosk.img /dev/sdX [--yes]
    kiosk-provision token --db hall.db --kiosk K1 --hall H1  one-time enrolment token (prints it)
    kiosk-provision update-key keys/                       the fleet's ed25519 update key pair
    kiosk-provision bundle kiosk.img --version 1.1 --key keys/update.key --out kiosk-1.1.kup

Exit codes: 0 done, 1 refused or failed (the reason is printed), 2 bad command line.
Progress bars go to stderr (tqdm); the one-line result of each command goes to stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from tqdm import tqdm

from . import bmap as bmaps
from .certs import CertError
from .disk import DiskError
from .image import BuildError
from .flash import FlashError, describe, flash, load_bmap, problems
from .personalise import PersonaliseError, personalise


@contextlib.contextmanager
def bar(total: int, desc: str):
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
              dynamic_ncols=True, mininterval=0.5) as t:
        yield t.update


def write_bmap(image: Path, out: Path | None = None) -> Path:
    with bar(sum((b - a + 1) * bmaps.BLOCK for a, b in bmaps.data_extents(image)), "block map") as step:
        return bmaps.write(image, out, step)


def cmd_build(args: argparse.Namespace) -> int:
    import time

    from .image import build

    out = Path(args.out)
    work = Path(args.work) if args.work else out.with_name(out.stem + ".work")
    t0 = time.monotonic()
    with tqdm(total=6, desc="image build", unit="step", file=sys.stderr, dynamic_ncols=True) as t:
        def step(name: str) -> None:
            if t.n or name != "debootstrap (arm64, emulated)":
                t.update(1)
            t.set_postfix_str(name)

        said: list[str] = []

        def say(line: str) -> None:
            said.append(line)
            t.write(line, file=sys.stderr)

        built = build(out, work, simulate=args.simulate, epoch=args.epoch, progress=step, release=args.release,
                      update_key=Path(args.update_key) if args.update_key else None, say=say)
        t.update(t.total - t.n)
    size = out.stat().st_size
    used = sum(r.length(size) for r in bmaps.loads(built.bmap.read_text()).ranges)
    print(f"built {out} ({size / 2**20:.0f} MiB, {used / 2**20:.0f} MiB of data) in {time.monotonic() - t0:.0f} s: "
          f"{'Raspberry Pi OS' if built.for_pi else 'Debian'} {built.kernel_version} kernel, {built.bmap.name}, "
          f"{built.kernel.name} + {built.initrd.name} for qemu -kernel/-initrd; build log {work / 'build.log'}")
    for line in said:  # again after the bars: a technician must not miss which kernel the card has
        print(line)
    return 0


def cmd_bmap(args: argparse.Namespace) -> int:
    image = Path(args.image)
    out = write_bmap(image, Path(args.out) if args.out else None)
    bm = bmaps.loads(out.read_text())
    print(f"wrote {out}: {bm.mapped_bytes / 2**20:.1f} MiB mapped of {bm.image_size / 2**20:.1f} MiB "
          f"in {len(bm.ranges)} ranges")
    return 0


def cmd_personalise(args: argparse.Namespace) -> int:
    image = Path(args.image)
    wrote = personalise(image, args.kiosk, args.hall, args.enrol_url, args.token, Path(args.ca), args.mqtt)
    print(f"personalised {image} for kiosk {args.kiosk} of hall {args.hall}: wrote {', '.join(wrote)} "
          f"to its boot partition (enrolment at {args.enrol_url}; the token works once)")
    if bmaps.bmap_path(image).exists():
        write_bmap(image, bmaps.bmap_path(image))
        print(f"updated {bmaps.bmap_path(image)} (the boot partition changed)")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    image, target = Path(args.image), Path(args.target)
    why = problems(target, image)
    if why:
        print("kiosk-provision: refusing to write " + str(target) + ":\n  " + "\n  ".join(why), file=sys.stderr)
        return 1
    bm = load_bmap(image, Path(args.bmap) if args.bmap else None)
    t = describe(target)
    what = (f"{target} ({t.model}, {t.size / 1e9:.1f} GB)" if t.size is not None else f"{target} (a regular file)")
    print(f"about to write {image} ({bm.mapped_bytes / 2**20:.1f} MiB of data, {bm.image_size / 2**20:.0f} MiB image) "
          f"to {what}; everything on it will be lost.", file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            print("kiosk-provision: not asked on a terminal: pass --yes to write without asking", file=sys.stderr)
            return 1
        answer = input(f"Type yes to write {target}: ")
        if answer.strip().lower() != "yes":
            print("nothing written", file=sys.stderr)
            return 1
    with bar(2 * bm.mapped_bytes, "write + verify") as step:
        report = flash(image, target, bm, step)
    print(report)
    return 0


def cmd_update_key(args: argparse.Namespace) -> int:
    from .updates import keygen

    d = Path(args.dir)
    if (d / "update.key").exists():
        print(f"kiosk-provision: {d / 'update.key'} exists: the fleet's images trust it; not replaced", file=sys.stderr)
        return 1
    priv, pub = keygen(d)
    print(f"wrote {priv} (keep it offline: it signs updates) and {pub} (image build --update-key {pub})")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    import time

    from .bundle import from_image
    from .updates import UpdateError

    t0 = time.monotonic()
    out = Path(args.out)
    try:
        header = from_image(Path(args.image), out, args.version, Path(args.key))
    except UpdateError as exc:
        print(f"kiosk-provision: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: version {header.version}, root {header.size / 2**20:.0f} MiB, sha256 {header.sha256[:16]}..., "
          f"signed with {args.key}, in {time.monotonic() - t0:.0f} s")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from hall.enrol import issue_token

    token = issue_token(args.db, args.kiosk, args.hall, args.ttl_hours * 3600)
    print(token)
    print(f"one-time enrolment token for kiosk {args.kiosk} of hall {args.hall}, good for {args.ttl_hours:g} h "
          f"(only its hash is stored in {args.db})", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk-provision", description=__doc__.splitlines()[0],
                                epilog="Exit codes: 0 done, 1 refused or failed, 2 bad command line. "
                                       "docs/provisioning.md walks through it all.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    img = sub.add_parser("image", help="build an image or its block map").add_subparsers(dest="image_cmd", required=True)
    bu = img.add_parser("build", help="Debian bookworm arm64 image with kioskd (mmdebstrap; needs root)")
    bu.add_argument("--out", required=True, help="the image file to write (kiosk.img)")
    bu.add_argument("--work", help="build directory (default OUT.work beside the image)")
    bu.add_argument("--simulate", action="store_true", help="kioskd runs every device on its emulator (tests, demo)")
    bu.add_argument("--epoch", type=int, default=1_700_000_000, help="time recorded in the file systems "
                    "(SOURCE_DATE_EPOCH; same inputs and epoch -> same image where the tools allow)")
    bu.add_argument("--release", default="", help="the root's version, /etc/kiosk/release (default kioskd's)")
    bu.add_argument("--update-key", help="update.pub: the key the kiosk checks updates with (without it, no "
                    "updates: a new image is the only way)")
    bu.set_defaults(func=cmd_build)
    bm = img.add_parser("bmap", help="write IMAGE.bmap (bmaptool format) beside the image")
    bm.add_argument("image")
    bm.add_argument("--out", help="where to write the block map (default IMAGE.bmap)")
    bm.set_defaults(func=cmd_bmap)

    pe = sub.add_parser("personalise", help="write a kiosk's identity and one-time token into an image")
    pe.add_argument("image")
    pe.add_argument("--kiosk", required=True, help="kiosk id (becomes its certificate's CN)")
    pe.add_argument("--hall", required=True, help="hall id")
    pe.add_argument("--enrol-url", required=True, help="halld's enrolment endpoint, https://HOST:PORT/enrol")
    pe.add_argument("--token", required=True, help="one-time enrolment token (kiosk-provision token)")
    pe.add_argument("--ca", required=True, help="the fleet CA certificate (ca.crt) the kiosk trusts")
    pe.add_argument("--mqtt", metavar="HOST:PORT", help="the hall's broker (default: the enrolment host, port 8883)")
    pe.set_defaults(func=cmd_personalise)

    tk = sub.add_parser("token", help="issue a one-time enrolment token in the hall database (prints it)")
    tk.add_argument("--db", required=True, help="halld's database: SQLite path or postgresql:// URL")
    tk.add_argument("--kiosk", required=True)
    tk.add_argument("--hall", required=True)
    tk.add_argument("--ttl-hours", type=float, default=168.0, help="valid for this long (default 168 = 7 days)")
    tk.set_defaults(func=cmd_token)

    uk = sub.add_parser("update-key", help="make the fleet's update signing key pair (ed25519)")
    uk.add_argument("dir", help="directory for update.key (0600, keep offline) and update.pub")
    uk.set_defaults(func=cmd_update_key)

    ub = sub.add_parser("bundle", help="a signed update bundle from a built image's root (A/B updates)")
    ub.add_argument("image", help="an image from `image build` (its slot A is the update's root)")
    ub.add_argument("--version", required=True, help="the release (letters, digits, . _ + ~ -); written to "
                    "/etc/kiosk/release in the bundle's root")
    ub.add_argument("--key", required=True, help="update.key (kiosk-provision update-key)")
    ub.add_argument("--out", required=True, help="the bundle to write (kiosk-VERSION.kup)")
    ub.set_defaults(func=cmd_bundle)

    fl = sub.add_parser("flash", help="write an image to a card with its block map and verify by reading back")
    fl.add_argument("image")
    fl.add_argument("target", help="the card's whole-disk device (/dev/sdX, /dev/mmcblkN) or a file")
    fl.add_argument("--bmap", help="block map (default IMAGE.bmap)")
    fl.add_argument("--yes", action="store_true", help="do not ask before writing")
    fl.set_defaults(func=cmd_flash)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (DiskError, FlashError, PersonaliseError, bmaps.BmapError, OSError, CertError, BuildError) as exc:
        print(f"kiosk-provision: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kiosk-provision: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
