import pytest

from hall.broker import start_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real Mosquitto for the whole test session."""
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()
