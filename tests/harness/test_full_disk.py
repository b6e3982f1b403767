"""A full disk under the reports dir: a short error, exit 3, and no temp dir left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def full_fs(tmp_path):
    """A 64 kB tmpfs filled to the last byte (needs CAP_SYS_ADMIN: root, as on the CI runner)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        fd = os.open(mount / "fill", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_reports_disk_is_one_short_error(full_fs, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--platform", "local", "--channel",
         "2.22/stable", "--reports-dir", str(full_fs / "reports")],
        cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr
    assert list(tmp.iterdir()) == [], "a temp dir was left behind"
