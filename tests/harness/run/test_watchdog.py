"""A component that dies while scenarios run stops the cell in seconds: broken, exit 3, named.

The first test drives the watchdog with a real process; the others kill a real component of a
real local cell mid-scenario (benchmarks/dead_component.py measures all six cases)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.run.watchdog import Watchdog
from provisioners.api import Component

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import dead_component
finally:
    sys.path.pop(0)


def test_the_watchdog_names_the_part_that_died_and_calls_back():
    part = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stopped = threading.Event()
    try:
        def check() -> str | None:
            code = part.poll()
            return None if code is None else f"exited with code {code}"

        with Watchdog([Component("S3 (fake name)", check, lambda: "last words")],
                      on_dead=stopped.set, interval=0.1) as dog:
            time.sleep(0.5)
            assert dog.died is None and not stopped.is_set()
            part.kill()
            assert stopped.wait(5)
        assert dog.died is not None
        assert dog.died.component == "S3 (fake name)"
        assert "exited with code -9" in dog.died.message and "last words" in dog.died.message
    finally:
        part.kill()
        part.wait()


def test_a_failing_check_waits_its_grace_before_it_counts():
    calls = []
    with Watchdog([Component("server", lambda: calls.append(1) or "refused", grace=60)],
                  on_dead=lambda: None, interval=0.05) as dog:
        time.sleep(0.5)
    assert len(calls) > 3 and dog.died is None


@pytest.mark.parametrize("case", ["local:2.22/stable:mlflow-server", "local:2.22/stable:s3",
                                  "local-mysql:2.22/stable:sql"])
def test_a_component_killed_mid_scenario_breaks_the_cell(case, tmp_path, record_property):
    if case.startswith("local-mysql") and not Path("/usr/sbin/mariadbd").exists():
        pytest.skip("MariaDB is not installed")
    death = dead_component.kill_mid_scenario(case, tmp_path)
    record_property("seconds_to_verdict", death.seconds_to_verdict)
    assert death.exit_code == 3, death
    assert death.status == "broken" and death.named, death
    assert death.left_processes == 0, death
