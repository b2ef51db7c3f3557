import pytest

from hall.broker import start_broker

pytest_plugins = ["tests.rig.plugin"]  # --rig rig.toml: the device tests on the rig's ports (docs/rig.md)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real Mosquitto for the whole test session."""
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()
