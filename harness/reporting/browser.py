"""Headless Chromium for checking the reports as a reviewer sees them (DOM dump, screenshot).

Every launch gets a fresh, empty profile and no network chatter of its own; the process is
waited for (and killed with its group on timeout), so nothing is left running.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.system.procs import stop_group

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-chromium-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, timeout=5)
            out, err = proc.communicate()
            raise TimeoutError(f"chromium did not finish in {timeout:.0f}s: {' '.join(args)}"
                               ) from None
        finally:
            # helpers (zygote, crashpad) share the group and may outlive the browser
            stop_group(proc.pid, timeout=5)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def dump_dom(url: str, *, wait_ms: int = 5000, timeout: float = 120) -> str:
    """The DOM after scripts ran for `wait_ms` of virtual time (static pages: after load)."""
    proc = _run([f"--virtual-time-budget={wait_ms}", "--dump-dom", url], timeout)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"chromium --dump-dom {url} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 900,
               wait_ms: int = 5000, timeout: float = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    proc = _run([f"--virtual-time-budget={wait_ms}", f"--window-size={width},{height}",
                 f"--screenshot={path}", url], timeout)
    if not path.is_file():
        raise RuntimeError(f"chromium --screenshot {url} wrote nothing ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return path
