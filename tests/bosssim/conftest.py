import pytest

from bosssim.server import start
from transactions.boss import http_boss


@pytest.fixture
async def sim(tmp_path):
    runner, simulator, port = await start(str(tmp_path / "boss.db"))
    simulator.url = f"http://127.0.0.1:{port}"
    yield simulator
    await runner.cleanup()


@pytest.fixture
async def boss(sim):
    client = http_boss(sim.url, timeout=2.0)
    yield client
    await client.close()
