"""The README's demo: a simulated kiosk, halld and mosquitto; the kiosk's birth reaches the hall."""
import subprocess
import sys


def test_demo_runs_its_script_once_and_the_hall_sees_the_kiosk(tmp_path):
    out = subprocess.run([sys.executable, "-m", "controller.demo", "--once", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SIM-0001: 在线 online" in out.stdout
