"""The demo: a simulated hall with its kiosks, above controller/ and hall/ (python -m demo)."""
