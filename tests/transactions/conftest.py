import aiohttp
import pytest

from bosssim.server import start
from transactions import records
from transactions.boss import http_boss
from transactions.flow import FlowConfig, Hardware, Services
from transactions.journal import Journal

from .doubles import BillValidator, CoinAcceptor, Dispenser, FakeModem, FakePrinter, Hopper


class Sim:
    """The BOSS simulator in this test's loop, with its control endpoint."""

    def __init__(self, simulator, url):
        self.simulator, self.url = simulator, url

    async def fault(self, **body):
        async with aiohttp.ClientSession() as s:
            async with s.post(self.url + "/control/fault", json=body) as r:
                assert r.status == 200

    async def ledger(self):
        async with aiohttp.ClientSession() as s:
            async with s.get(self.url + "/control/ledger") as r:
                return await r.json()

    async def balance(self, phone):
        return (await self.ledger())["accounts"][phone]["balance_fen"]


@pytest.fixture
async def sim(tmp_path):
    runner, simulator, port = await start(str(tmp_path / "boss.db"))
    yield Sim(simulator, f"http://127.0.0.1:{port}")
    await runner.cleanup()


@pytest.fixture
async def journal(tmp_path):
    async with Journal(tmp_path / "journal.db", kiosk="K01") as j:
        yield j


@pytest.fixture
def hw():
    return Hardware(acceptors=[BillValidator(), CoinAcceptor()], hopper=Hopper(), printer=FakePrinter(),
                    dispensers={3000: Dispenser("cards30"), 5000: Dispenser("cards50")}, modem=FakeModem())


@pytest.fixture
async def services(journal, sim, hw):
    boss = http_boss(sim.url, timeout=0.5)
    config = FlowConfig(idle_timeout=0.5, stack_timeout=0.5, take_timeout=0.1, drain_time=0.02)
    yield Services(journal=journal, hw=hw, boss=boss, config=config)
    await boss.close()


async def txn_of(services, txn):
    return await services.journal.read(records.get_txn, txn)
