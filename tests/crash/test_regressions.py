"""Bugs the crash soak found, pinned where they live (fast: no rig, no kioskd)."""
from transactions import records
from transactions.journal import Journal


async def test_a_payout_resolved_as_no_coin_paid_leaves_an_uncounted_hopper_uncounted(tmp_path):
    """A kill right after a payout intent: recovery asks the hopper, which paid 0 coins, and the
    outcome moves the hopper level by -0. Written as a row, "counted, 0 coins left" would make
    every later change a voucher (the soak saw every payout boundary after that one missed)."""
    j = await Journal(tmp_path / "journal.db", kiosk="K01").open()
    try:
        await j.write(records.adjust_counter, "hopper", "hopper", 0, 1.0)
        await j.write(records.adjust_counter, "hopper", "hopper", -3, 1.0)
        assert (await j.read(records.counters, "hopper")).get("hopper", {}) == {}
        # a counted level still moves both ways, and a tally still starts from nothing
        await j.write(records.set_counter, "hopper", "hopper", 10, 1.0)
        await j.write(records.adjust_counter, "hopper", "hopper", -3, 1.0)
        await j.write(records.adjust_counter, "hopper", "hopper", 0, 1.0)
        await j.write(records.adjust_counter, "card_reject", "3000", 1, 1.0)
        counts = await j.read(records.counters)
        assert counts["hopper"] == {"hopper": 7} and counts["card_reject"] == {"3000": 1}
    finally:
        await j.close()
