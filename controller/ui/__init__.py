"""The customer's touch screen: a page kioskd serves on loopback, shown by Chromium in kiosk mode.

The page is a consumer of the screen model (controller/screen.py): kioskd pushes a snapshot over
one WebSocket whenever the screen moves, the page sends back ``begin``/``answer``/``cancel``/
``touch``. The flow never waits on the page. docs/ui.md has the message format and the unit file.
"""
from .server import UiServer

__all__ = ["UiServer"]
