"""kioskd: the kiosk controller daemon, its configuration, lifecycle, hall link and kioskctl."""

__version__ = "0.1.0"
