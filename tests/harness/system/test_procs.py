"""procs.run(cancel=…): a long command (an env build) stops at once on Ctrl-C, group and all."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.system.errors import CommandError, Interrupted
from harness.system.procs import run


def test_a_cancellable_command_stops_with_its_children_when_cancelled(tmp_path):
    cancel = threading.Event()
    pid_file = tmp_path / "child"
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        run(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=120, cancel=cancel)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())  # `sleep`, in the command's process group
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_cancellable_command_still_reports_output_failures_and_timeouts():
    cancel = threading.Event()
    done = run(["sh", "-c", "cat; echo out; echo err >&2"], timeout=30, cancel=cancel,
               input="in\n")
    assert (done.stdout, done.stderr) == ("in\nout\n", "err\n")
    with pytest.raises(CommandError) as failed:
        run(["sh", "-c", "exit 3"], timeout=30, cancel=cancel)
    assert failed.value.exit_code == 3
    with pytest.raises(CommandError, match="timed out after 1s"):
        run(["sleep", "30"], timeout=1, cancel=cancel)
    cancel.set()
    with pytest.raises(Interrupted):
        run(["true"], timeout=30, cancel=cancel)
