"""Card dispensers: CRT-571/591 (0xF2 frames), K720 family (ACK/ENQ), and a bare motor + sensors on GPIO.

``give_card`` (common.py) is the one place where an untaken card is captured.
"""
from .common import give_card

__all__ = ["give_card"]
