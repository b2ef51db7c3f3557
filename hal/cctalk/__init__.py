"""ccTalk drivers: coin acceptor (coin.py), bill validator (bill.py), hopper (hopper.py) on a shared bus (bus.py)."""
