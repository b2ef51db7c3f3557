import pytest

from hal.device import DeviceContext
from hal.emulators.i2c_chips import SimSMBus
from hal.sensors.base import SIM_BUS_KEY


class Kiosk:
    """A simulated kiosk context whose I2C bus the test can reach: the same object the drivers get."""

    def __init__(self):
        self.events = []
        self.ctx = DeviceContext(report=self.events.append, simulate=True)
        self.bus = self.ctx.share(SIM_BUS_KEY, SimSMBus.with_default_chips)

    def kinds(self):
        return [(e.kind, e.code) for e in self.events]


@pytest.fixture
def kiosk():
    return Kiosk()
