"""What kioskd does with a dispenser section: load the driver by name, validate Options, run --simulate."""
import dataclasses

import pytest

from hal.device import DeviceContext
from hal.dispenser import give_card
from hal.emulators.control import call
from hal.emulators.simports import SimPorts
from hal.registry import DRIVERS, load_driver

CONFIG_TYPES = {"str", "int", "float", "bool", "list[int]", "list[str]", "dict[str, int]"}


@pytest.mark.parametrize("name", ["crt571", "k720", "gpio-dispenser"])
def test_registered_drivers_load_and_their_options_use_config_types(name):
    cls = load_driver(name)
    fields = dataclasses.fields(cls.Options)
    assert {f.type for f in fields} <= CONFIG_TYPES
    assert "take_timeout_s" in {f.name for f in fields}
    assert cls.Options.__dataclass_params__.frozen


@pytest.mark.parametrize("name", ["crt571", "k720"])
async def test_simulate_runs_the_driver_against_its_emulator_on_a_sim_port(name, tmp_path):
    sim = SimPorts(control_dir=tmp_path)
    ctx = DeviceContext(simulate=True, sim_ports=sim)
    cls = load_driver(name)
    emulator = DRIVERS[name].emulator
    driver = cls("cards", cls.Options(port=f"sim:{emulator}", poll_interval_s=0.02), ctx)
    try:
        await driver.start()
        await sim.started()
        assert await give_card(driver, timeout=0.05) == "captured"
        state = await call(str(tmp_path / f"emu-{emulator}.sock"), "state")
        assert (state["captured"], state["dispensed"]) == (1, 1)
    finally:
        await driver.stop()
        await sim.stop()
