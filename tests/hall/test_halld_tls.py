"""halld on the secure broker (docs/security.md): its own certificate, shared subscriptions and
every topic it writes allowed by the ACL; two workers with their own certificates."""
from __future__ import annotations

import pytest

from hall.mosquitto_secure import start_secure_broker
from provisioning.certs import mint_client

from .conftest import FLEET
from .kiosk_client import FakeKiosk, running_halld


@pytest.fixture(scope="module")
def two_worker_broker(pki, tmp_path_factory):
    """The fleet's broker with two halld identities in the ACL (docs/security.md: one certificate per worker)."""
    mint_client(pki.ca, pki.dir, "halld-2")
    b = start_secure_broker(tmp_path_factory.mktemp("secure-2w"), pki.ca, pki.server, FLEET,
                            halld_users=("halld", "halld-2"))
    yield b
    b.stop()


def tls_args(pki, cn: str) -> dict:
    return {"ca_file": str(pki.dir / "ca.crt"), "cert_file": str(pki.dir / f"{cn}.crt"),
            "key_file": str(pki.dir / f"{cn}.key"), "mqtt_host": "localhost"}


async def test_halld_with_its_certificate_stores_acks_and_answers_on_the_secure_broker(secure_broker, pki, tmp_path):
    async with running_halld(secure_broker.port, str(tmp_path / "h.db"), worker="halld", halls=["H1"],
                             **tls_args(pki, "halld")) as halld, \
            FakeKiosk(secure_broker.port, "H1", "K1", tls=pki.context("K1"), host="localhost") as k:
        _, state = await k.next("hall/v1/H1/state", where=lambda b: b["online"])  # halld may write hall/v1/H1/state
        await k.birth(session=3)
        await k.txn(1)
        assert (await k.ack_reaching(1)) == {"schema": 1, "msg_seq": 1}  # ...and K1's ack
        await k.publish("boss/req", {"op": "ping", "params": {}}, ResponseTopic=f"{k.base}/resp/boss",
                        CorrelationData=b"p")
        _, reply = await k.next("/resp/boss")  # ...and K1's resp/ (no BOSS adapter here: unavailable)
        assert reply["code"] == "unavailable"
        assert halld.snapshot()["records"] == 1


async def test_two_workers_with_their_own_certificates_share_the_load(two_worker_broker, pki, tmp_path):
    db = str(tmp_path / "h.db")
    async with running_halld(two_worker_broker.port, db, worker="halld", halls=["H1"], **tls_args(pki, "halld")) as w1, \
            running_halld(two_worker_broker.port, db, worker="halld-2", halls=["H1"], http_port=None,
                          **tls_args(pki, "halld-2")) as w2, \
            FakeKiosk(two_worker_broker.port, "H1", "K2", tls=pki.context("K2"), host="localhost") as k:
        for seq in range(1, 41):
            await k.txn(seq)
        assert (await k.ack_reaching(40))["msg_seq"] == 40
        assert w1.snapshot()["records"] > 0 and w2.snapshot()["records"] > 0
