"""A fleet PKI and a secure Mosquitto shared by the hall security tests (one per module)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hall.mosquitto_secure import SecureBroker, start_secure_broker
from provisioning.certs import CA, Issued, mint_ca, mint_client, mint_server, tls_context

FLEET = {"H1": ["K1", "K2"], "H2": ["K3"]}


@dataclass
class Pki:
    dir: Path
    ca: CA
    server: Issued
    rogue_dir: Path  # certificates from a CA the broker does not trust

    def context(self, cn: str, rogue: bool = False):
        d = self.rogue_dir if rogue else self.dir
        return tls_context(self.dir / "ca.crt", d / f"{cn}.crt", d / f"{cn}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = mint_ca(d)
    server = mint_server(ca, d, ["localhost", "127.0.0.1"])
    for cn in ("halld", "K1", "K2", "K3", "K9"):  # K9: a valid certificate, but not in the fleet
        mint_client(ca, d, cn)
    rogue = tmp_path_factory.mktemp("rogue")
    rogue_ca = mint_ca(rogue, name="not the fleet CA")
    mint_client(rogue_ca, rogue, "halld")
    return Pki(d, ca, server, rogue)


@pytest.fixture(scope="module")
def secure_broker(pki, tmp_path_factory):
    b: SecureBroker = start_secure_broker(tmp_path_factory.mktemp("secure-mosquitto"), pki.ca, pki.server, FLEET)
    yield b
    b.stop()


# --- halld: databases -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    """One private PostgreSQL cluster for the session (tests/support/postgres.py)."""
    from tests.support.postgres import start_postgres

    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "hall.db")
    return request.getfixturevalue("postgres").new_database()
