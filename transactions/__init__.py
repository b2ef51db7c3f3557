"""Business flows as explicit state machines over a durable journal, the ledger rule, recovery, BOSS.

What kioskd uses:

    async with Journal(path, kiosk="K01", version=__version__) as journal:
        services = Services(journal=journal, hw=Hardware(...), boss=http_boss(url), config=FlowConfig(...))
        await recover(services)                              # at boot, before the first customer
        result = await run_flow(services, "topup", customer)  # per customer
        rows = await books.outbox(journal); await books.ack(journal, seq)
"""
from . import books
from .boss import Boss, BossError, BossRefused, BossTimeout, BossUnavailable, http_boss
from .customer import Customer, CustomerCancelled, CustomerIdle, ScriptedCustomer
from .flow import FlowConfig, FlowResult, Hardware, Services
from .flows import FLOWS, SPECS
from .journal import Journal
from .recovery import recover
from .service import available, run_flow

__all__ = ["books", "Boss", "BossError", "BossRefused", "BossTimeout", "BossUnavailable", "http_boss", "Customer",
           "CustomerCancelled", "CustomerIdle", "ScriptedCustomer", "FlowConfig", "FlowResult", "Hardware",
           "Services", "FLOWS", "SPECS", "Journal", "recover", "available", "run_flow"]
