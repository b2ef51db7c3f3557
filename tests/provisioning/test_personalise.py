"""kiosk-provision personalise: the identity lands in the FAT partition, read back with mtools."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.disk import boot_slice, fat_list, fat_read
from provisioning.personalise import PersonaliseError, identity_toml, read_identity

TOKEN = "tok_" + "a1B2" * 8


def provision(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_personalise_writes_identity_and_ca(image: Path, fleet_ca) -> None:
    r = provision("personalise", str(image), "--kiosk", "K7", "--hall", "H1", "--enrol-url",
                  "https://hall.example:8471/enrol", "--token", TOKEN, "--ca", str(fleet_ca.cert_path))
    assert r.returncode == 0, r.stderr
    assert "personalised" in r.stdout and "K7" in r.stdout
    s = boot_slice(image)
    assert fat_list(image, s) == ["config.txt", "fleet-ca.crt", "kiosk-identity.toml"]
    ident = read_identity(fat_read(image, s, "kiosk-identity.toml").decode())
    assert ident == {"kiosk": "K7", "hall": "H1", "enrol_url": "https://hall.example:8471/enrol", "token": TOKEN}
    assert fat_read(image, s, "fleet-ca.crt") == fleet_ca.cert_path.read_bytes()
    # personalising again (a card re-used for another kiosk) replaces, never duplicates
    r = provision("personalise", str(image), "--kiosk", "K8", "--hall", "H1", "--enrol-url",
                  "https://hall.example:8471/enrol", "--token", TOKEN[::-1], "--ca", str(fleet_ca.cert_path))
    assert r.returncode == 0, r.stderr
    assert read_identity(fat_read(image, s, "kiosk-identity.toml").decode())["kiosk"] == "K8"
    assert fat_list(image, s) == ["config.txt", "fleet-ca.crt", "kiosk-identity.toml"]


def test_broker_address_optional(image: Path, fleet_ca) -> None:
    r = provision("personalise", str(image), "--kiosk", "K7", "--hall", "H1", "--enrol-url", "https://h:8471/enrol",
                  "--token", TOKEN, "--ca", str(fleet_ca.cert_path), "--mqtt", "10.0.2.2:18883")
    assert r.returncode == 0, r.stderr
    ident = read_identity(fat_read(image, boot_slice(image), "kiosk-identity.toml").decode())
    assert (ident["mqtt_host"], ident["mqtt_port"]) == ("10.0.2.2", 18883)
    for bad in ("10.0.2.2", "host:0", "host:99999", ":1883", "a b:1883"):
        with pytest.raises(PersonaliseError, match="HOST:PORT"):
            identity_toml("K7", "H1", "https://h/e", TOKEN, bad)


@pytest.mark.parametrize("kiosk,hall,url,token,why", [
    ("K/1", "H1", "https://h/enrol", TOKEN, "kiosk id"),
    ("halld", "H1", "https://h/enrol", TOKEN, "reserved"),
    ("K1", "H#", "https://h/enrol", TOKEN, "hall"),
    ("K1", "H1", "http://h/enrol", TOKEN, "https"),
    ("K1", "H1", "https://h/enrol", "short", "token"),
    ("K1", "H1", "https://h/enrol", TOKEN + "\n", "token"),
])
def test_bad_identity_refused(kiosk, hall, url, token, why) -> None:
    with pytest.raises(PersonaliseError, match=why):
        identity_toml(kiosk, hall, url, token)


def test_cli_refusals_leave_the_image_alone(image: Path, fleet_ca, tmp_path: Path) -> None:
    before = image.read_bytes()
    r = provision("personalise", str(image), "--kiosk", "K/1", "--hall", "H1", "--enrol-url", "https://h/e",
                  "--token", TOKEN, "--ca", str(fleet_ca.cert_path))
    assert r.returncode == 1 and "kiosk id" in r.stderr
    notca = tmp_path / "ca.crt"
    notca.write_text("not a certificate")
    r = provision("personalise", str(image), "--kiosk", "K1", "--hall", "H1", "--enrol-url", "https://h/e",
                  "--token", TOKEN, "--ca", str(notca))
    assert r.returncode == 1 and "fleet CA" in r.stderr
    assert image.read_bytes() == before
    r = provision("personalise", str(tmp_path / "nope.img"), "--kiosk", "K1", "--hall", "H1", "--enrol-url",
                  "https://h/e", "--token", TOKEN, "--ca", str(fleet_ca.cert_path))
    assert r.returncode == 1 and "no such image" in r.stderr
    assert provision("personalise", str(image)).returncode == 2
