"""A real halld (in-process, SQLite, the session's Mosquitto) with staff accounts, and a browser-like client."""
from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from dataclasses import dataclass

import aiohttp
import pytest

from hall import auth
from tests.hall.kiosk_client import running_halld

PASSWORD = "correct horse battery"


@dataclass
class Console:
    halld: object

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.halld.http_port}"

    async def user(self, role: str, name: str | None = None, password: str = PASSWORD) -> str:
        name = name or f"{role}-{secrets.token_hex(3)}"
        pw_hash = await asyncio.to_thread(auth.hash_password, password)
        await self.halld._writer.call(auth.add_user, name, role, pw_hash, "test")
        return name

    async def token(self, role: str) -> str:
        name = await self.user(role)
        return await self.halld._writer.call(auth.new_token, name, "test", "test")

    def browser(self) -> "Staff":
        return Staff(self.url)

    async def audit(self) -> list[dict]:
        return await self.halld._reader(auth.audit_entries, 1000)


class Staff:
    """What a browser does: cookies (also for 127.0.0.1), the login form's CSRF, the page's CSRF."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def __aenter__(self) -> "Staff":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with self.http.get(f"{self.url}/login") as r:
            form_csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
        async with self.http.post(f"{self.url}/login", data={"name": name, "password": password, "csrf": form_csrf},
                                  allow_redirects=False) as r:
            await r.read()
            response = r
        if response.status == 303:
            async with self.http.get(f"{self.url}/") as page:
                self.csrf = re.search(r'<meta name="csrf" content="([^"]+)"', await page.text()).group(1)
        return response

    def session_cookie(self) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == auth.SESSION_COOKIE:
                return cookie.value
        return None


@pytest.fixture
async def console(broker, tmp_path):
    async with running_halld(broker.port, str(tmp_path / "hall.db"), worker=f"web-{uuid.uuid4().hex[:6]}") as halld:
        yield Console(halld)


@pytest.fixture(scope="session")
def postgres():
    from tests.support.postgres import start_postgres

    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "hall.db")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
async def bosssim(tmp_path):
    """bosssim in this process on a free port (its HTTP face, as halld's back office calls it)."""
    from bosssim.server import start

    runner, sim, port = await start(str(tmp_path / "boss.db"))
    sim.url = f"http://127.0.0.1:{port}"
    yield sim
    await runner.cleanup()


@pytest.fixture
async def boss_console(broker, tmp_path, bosssim):
    """A console whose halld has a BOSS (bosssim), for the back office; BOSS calls time out after 1 s."""
    async with running_halld(broker.port, str(tmp_path / "hall.db"), worker=f"web-{uuid.uuid4().hex[:6]}",
                             boss_url=bosssim.url, boss_timeout_s=1.0) as halld:
        console = Console(halld)
        console.boss = bosssim
        yield console
