"""Signed update bundles: verified before use, streamed into the other slot, refused when not ours."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioning.disk import Part, assemble, partitions
from provisioning.updates import (BootFiles, SlotWriter, Trial, UpdateError, install, keygen, load_public,
                                  make_bundle, read_header, verify_header)

from .conftest import tool


@pytest.fixture
def new_root(tmp_path: Path) -> Path:
    """A slot-sized ext4 holding version 2 of the root, made without mounts."""
    src = tmp_path / "root2" / "etc"
    src.mkdir(parents=True)
    (src / "kiosk-version").write_text("2.0\n")
    img = tmp_path / "root2.ext4"
    assemble(tmp_path / "whole.img", [Part("rootB", "ext4", 16, src.parent)])
    s = partitions(tmp_path / "whole.img")[0]
    with open(tmp_path / "whole.img", "rb") as f, open(img, "wb") as o:
        f.seek(s.offset)
        o.write(f.read(s.size))
    return img


def test_signed_bundle_installs_into_the_other_slot(image: Path, new_root: Path, tmp_path: Path) -> None:
    key, pub = keygen(tmp_path / "keys")
    assert key.stat().st_mode & 0o777 == 0o600
    bundle = tmp_path / "kiosk-2.0.kup"
    made = make_bundle(new_root, bundle, "2.0", key)
    header = verify_header(bundle, load_public(pub))
    assert header == made and header.version == "2.0" and header.size == new_root.stat().st_size
    slot_b = partitions(image)[2]
    install(bundle, header, image, slot_b.offset, slot_b.size)
    out = subprocess.run([tool("debugfs"), "-R", "cat /etc/kiosk-version", f"{image}?offset={slot_b.offset}"],
                         capture_output=True, check=True)
    assert out.stdout == b"2.0\n"
    slot_a = partitions(image)[1]  # slot A untouched
    out = subprocess.run([tool("debugfs"), "-R", "cat /etc/hostname", f"{image}?offset={slot_a.offset}"],
                         capture_output=True, check=True)
    assert out.stdout == b"kiosk\n"


def test_bad_signature_refused_before_any_write(new_root: Path, tmp_path: Path) -> None:
    key, _ = keygen(tmp_path / "ours")
    _, theirs = keygen(tmp_path / "theirs")
    bundle = tmp_path / "b.kup"
    make_bundle(new_root, bundle, "2.0", key)
    with pytest.raises(UpdateError, match="bad signature"):
        verify_header(bundle, load_public(theirs))
    # a header edited after signing (a bigger version number, say) no longer verifies either
    data = bundle.read_bytes().replace(b'"version": "2.0"', b'"version": "9.0"', 1)
    bundle.write_bytes(data)
    with pytest.raises(UpdateError, match="bad signature"):
        verify_header(bundle, load_public(tmp_path / "ours" / "update.pub"))
    junk = tmp_path / "junk.kup"
    junk.write_bytes(b"not an update")
    with pytest.raises(UpdateError, match="not a kiosk update bundle"):
        verify_header(junk, load_public(theirs))


def test_damaged_payload_is_caught(new_root: Path, tmp_path: Path) -> None:
    key, pub = keygen(tmp_path / "k")
    bundle = tmp_path / "b.kup"
    header = make_bundle(new_root, bundle, "2.0", key)
    with open(bundle, "r+b") as f:  # one flipped byte in the payload: the header still verifies
        f.seek(header.offset + 1024)
        b = f.read(1)
        f.seek(header.offset + 1024)
        f.write(bytes([b[0] ^ 1]))
    h = verify_header(bundle, load_public(pub))
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"\0" * header.size)
    with pytest.raises(UpdateError, match="does not match its signed hash"):
        install(bundle, h, slot)
    with open(bundle, "ab") as f:
        f.write(b"extra")
    with pytest.raises(UpdateError, match="the signed header says"):
        verify_header(bundle, load_public(pub))
    with pytest.raises(UpdateError, match="slot holds"):
        install(bundle, h, slot, 0, header.size - 1)


def test_a_download_is_checked_as_it_streams(new_root: Path, tmp_path: Path) -> None:
    """The kiosk has no room for a copy: header from the first bytes, payload chunk by chunk."""
    key, pub = keygen(tmp_path / "k")
    bundle = tmp_path / "b.kup"
    make_bundle(new_root, bundle, "2.0", key)
    data = bundle.read_bytes()
    header = read_header(data[:4096], load_public(pub))
    slot = tmp_path / "slot.img"
    slot.write_bytes(b"\0" * header.size)
    writer = SlotWriter(header, slot)
    for i in range(header.offset, len(data), 65536):
        writer.write(data[i:i + 65536])
    writer.finish()
    assert slot.read_bytes() == new_root.read_bytes()
    cut = SlotWriter(header, slot)  # a download that stops early (link lost) is not a slot to try
    cut.write(data[header.offset:header.offset + 4096])
    with pytest.raises(UpdateError, match="ended after 4096 of"):
        cut.finish()


def test_boot_files_try_once_then_commit(tmp_path: Path) -> None:
    boot = BootFiles(tmp_path)
    assert boot.committed() == "A" and boot.tryboot() is None and boot.trying() is None
    boot.set_tryboot(Trial("B", "2.0", 300))
    assert boot.tryboot() == Trial("B", "2.0", 300)
    (tmp_path / "tryboot.txt").rename(tmp_path / "trying.txt")  # what the initrd does as it boots B
    boot.note("kioskd did not report healthy within 300 s")
    assert boot.trying() == Trial("B", "2.0", 300, ("kioskd did not report healthy within 300 s",))
    boot.commit("B")
    assert boot.committed() == "B" and boot.trying() is None
    (tmp_path / "slot.txt").write_text("C\n")
    with pytest.raises(UpdateError, match="not A or B"):
        boot.committed()
    (tmp_path / "trying.txt").write_text("garbage\n")
    with pytest.raises(UpdateError, match="SLOT VERSION TIMEOUT_S"):
        boot.trying()
