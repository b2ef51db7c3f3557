"""The journal schema as an append-only list of migrations (``PRAGMA user_version`` = how many ran).

Never edit a migration that has shipped: add the next one. Each runs in one transaction.
Money columns are integer fen. Times are UNIX seconds (REAL). JSON columns hold text.
"""

V1 = [
    # One row per process start: the boot counter is the MQTT session id.
    """CREATE TABLE boots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        version TEXT NOT NULL DEFAULT ''
    )""",
    # A transaction: kiosk-unique id "{kiosk}-{boot}-{n}"; seq is the per-kiosk sequence number,
    # assigned when the transaction finishes (the order the hall receives them in).
    # state: open | done | refunded | review. flow_state: the flow's own state table entry.
    """CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        seq INTEGER UNIQUE,
        boot INTEGER NOT NULL REFERENCES boots(id),
        service TEXT NOT NULL,
        phone TEXT,
        amount_fen INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'open',
        flow_state TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        note TEXT NOT NULL DEFAULT '',
        opened_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    )""",
    # Intent/outcome pairs: a row is written (and fsync'd) before the side effect; outcome and
    # closed_at after it. An open row at boot is what recovery resolves.
    """CREATE TABLE steps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn TEXT NOT NULL REFERENCES transactions(id),
        kind TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}',
        outcome TEXT,
        opened_at REAL NOT NULL,
        closed_at REAL,
        resolved_by TEXT
    )""",
    # Every movement of a transaction's money, one row each: the ledger is the sum of these.
    # kind: cash_in | applied | change | refunded | held.
    """CREATE TABLE money (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn TEXT NOT NULL REFERENCES transactions(id),
        kind TEXT NOT NULL CHECK (kind IN ('cash_in','applied','change','refunded','held')),
        fen INTEGER NOT NULL CHECK (fen >= 0),
        source TEXT NOT NULL DEFAULT '',
        step INTEGER REFERENCES steps(id),
        at REAL NOT NULL
    )""",
    # What is still to be reported to the hall, in order. topic: txn | event.
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL
    )""",
    # Counters: kind cashbox (key = denomination in fen, or "coin"), hopper (key = device),
    # card_stock (key = face value in fen), card_reject (key = face value).
    """CREATE TABLE counters (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, key)
    )""",
    """CREATE TABLE collections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        total_fen INTEGER NOT NULL,
        detail TEXT NOT NULL
    )""",
    """CREATE TABLE device_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        code TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}'
    )""",
    # Money the kiosk owes a customer and could not pay out: a voucher with a claim code.
    """CREATE TABLE refunds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        txn TEXT NOT NULL REFERENCES transactions(id),
        fen INTEGER NOT NULL CHECK (fen > 0),
        claim_code TEXT NOT NULL UNIQUE,
        reason TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'issued',
        created_at REAL NOT NULL,
        claimed_at REAL
    )""",
]

V2 = [
    # Recovery scans open steps and open transactions; the outbox drains undelivered rows.
    "CREATE INDEX steps_open ON steps(txn) WHERE closed_at IS NULL",
    "CREATE INDEX txn_open ON transactions(state) WHERE state = 'open'",
    "CREATE INDEX outbox_pending ON outbox(seq) WHERE delivered = 0",
    "CREATE INDEX money_txn ON money(txn)",
]

V3 = [
    # The hall's commands as they run (controller/commands.py): a copy delivered again after a
    # kioskd restart gets the first run's reply instead of a second run (load_cards twice would
    # count the cards twice). Kept until the command's deadline has passed.
    """CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        deadline REAL NOT NULL,
        reply TEXT  -- JSON; NULL while it runs, and after a restart cut it short
    )""",
]

MIGRATIONS: list[list[str]] = [V1, V2, V3]
