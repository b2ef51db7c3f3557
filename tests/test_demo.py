"""The README's demo: two simulated kiosks, halld, bosssim and a TLS-only mosquitto; both kiosks'
births, a top-up credited through the hall and a card sale reach the hall; a command comes back."""
import subprocess
import sys


def test_demo_runs_its_script_once_and_the_hall_sees_both_kiosks(tmp_path):
    out = subprocess.run([sys.executable, "-m", "controller.demo", "--once", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SIM-0001: 在线 online" in out.stdout and "SIM-0002: 在线 online" in out.stdout
    assert "txn SIM-0001 #1 topup      done" in out.stdout
    assert "txn SIM-0002 #1 card_sale  done" in out.stdout
    assert "→ ok=True" in out.stdout
