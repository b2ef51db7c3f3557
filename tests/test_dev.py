"""`./dev` sets up a venv that runs this tree: a .venv copied (or moved) with the clone points at the
old tree (its scripts' shebangs and the editable install), so ./dev rebuilds it; the build itself
says nothing about deprecated pyproject keys."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_venv_copied_with_the_clone_is_rebuilt_for_the_copy(tmp_path):
    assert sys.prefix != sys.base_prefix, "the tests run in ./dev's venv"
    copy = tmp_path / "copy"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(sys.prefix, copy / ".venv", symlinks=True)
    # As copied, the venv would run the original tree's code:
    assert (copy / ".venv/bin/kioskd").read_text().splitlines()[0] == f"#!{sys.prefix}/bin/python"

    out = subprocess.run([str(copy / "dev"), "test", "--version"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"The .venv was made for another copy of this repository ({sys.prefix}/bin/python): " \
           f"rebuilding it for {copy.resolve()}" in out.stderr
    assert (copy / ".venv/bin/kioskd").read_text().splitlines()[0] == f"#!{copy.resolve()}/.venv/bin/python"
    serves = subprocess.run([str(copy / ".venv/bin/python"), "-I", "-c", "import controller; print(controller.__file__)"],
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert serves == str(copy.resolve() / "controller" / "__init__.py")
    assert "Warning" not in out.stderr, out.stderr  # setuptools' BuildBackendWarning (license table) and friends

    again = subprocess.run([str(copy / "dev"), "test", "--version"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "rebuilding" not in again.stderr and "Installing" not in again.stderr, again.stderr
