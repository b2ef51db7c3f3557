"""bosssim: a BOSS (operator business system) simulator, run as its own process for tests and the demo.

``python -m bosssim --port 8600 --db /tmp/boss.db`` serves the JSON API that
``transactions.boss.HttpTransport`` speaks, plus ``/control/...`` to inject faults and read its ledger.
"""
