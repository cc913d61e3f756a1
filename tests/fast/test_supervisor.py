"""The `make up` supervisor with real child processes (short back-off so it runs in
seconds), and the Prefect server's memoised schema check."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from deployments.platform import Platform
from deployments.supervisor import ChildKeepsDying, RestartPolicy, check_children

FAST = RestartPolicy(first=0.05, cap=0.2, max_deaths=3, window=60)


def child_platform(tmp_path: Path) -> Platform:
    return Platform(home=tmp_path, prefect_port=1, mongo_port=1, api_port=1, data_dir=tmp_path / "data")


def supervise_for(platform: Platform, seconds: float, policy: RestartPolicy = FAST) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_children(platform, policy)
        time.sleep(0.02)


def test_a_killed_child_is_restarted_and_the_restart_logged(tmp_path):
    platform = child_platform(tmp_path)
    try:
        service = platform.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], lambda: True)
        first = service.proc.pid
        os.kill(first, signal.SIGKILL)
        supervise_for(platform, 1.0)
        assert service.proc.pid != first and service.proc.poll() is None
        log = service.log_path.read_text()
        assert "exited with code -9" in log and f"restarted as pid {service.proc.pid}" in log
        assert str(service.proc.pid) in (tmp_path / "children.json").read_text()
    finally:
        platform.stop()


def test_a_child_that_keeps_dying_stops_the_platform_saying_which_and_why(tmp_path):
    platform = child_platform(tmp_path)
    script = "import sys; print('cannot bind port 1234', flush=True); sys.exit(3)"
    try:
        platform.start("crasher", [sys.executable, "-c", script], lambda: True)
        with pytest.raises(ChildKeepsDying) as err:
            supervise_for(platform, 10)
        message = str(err.value)
        assert message.startswith("crasher died 4 times") and "exit code 3" in message and "cannot bind port 1234" in message
    finally:
        platform.stop()


def test_back_off_grows_and_is_capped():
    policy = RestartPolicy(first=1, cap=30)
    assert [policy.delay(k) for k in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


def test_memoised_schema_check_still_rejects_an_invalid_schema():
    from deployments.prefect_server import memoise_schema_checks

    memoise_schema_checks()
    from prefect.utilities.schema_tools.validation import ValidationError, is_valid_schema, validate

    good = {"type": "object", "properties": {"image": {"type": "string"}}}
    is_valid_schema(good)
    is_valid_schema(good)  # remembered
    with pytest.raises(ValueError, match="Invalid schema"):
        is_valid_schema({"type": "object", "properties": {"image": {"type": 12}}})
    with pytest.raises(ValidationError, match="image"):
        validate({"image": 5}, good, raise_on_error=True)  # values are still checked every time


def test_a_child_that_is_not_vital_is_given_up_alone_and_the_platform_goes_on(tmp_path):
    """An inference target (vital=False) that keeps crashing, e.g. on a user's bundle, must not stop
    the platform: it is left dead, named in the log, while a vital child is still supervised."""
    platform = child_platform(tmp_path)
    try:
        flaky = platform.start("inference-flaky", [sys.executable, "-c", "raise SystemExit(3)"], lambda: True, wait=False, vital=False)
        steady = platform.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], lambda: True)
        supervise_for(platform, 2.0)  # FAST allows 3 deaths: the 4th gives up without raising
        assert flaky.proc.poll() == 3 and flaky.restart_at == float("inf")
        assert "exited with code 3; given up" in flaky.log_path.read_text()
        pid = flaky.proc.pid
        supervise_for(platform, 0.5)
        assert flaky.proc.pid == pid, "a given-up child must not be started again"
        assert steady.proc.poll() is None and steady in platform.services
        with pytest.raises(ChildKeepsDying):  # the same deaths of a vital child still stop the platform
            vital = platform.start("vital", [sys.executable, "-c", "raise SystemExit(4)"], lambda: True, wait=False)
            supervise_for(platform, 2.0)
        assert vital.proc.poll() == 4
    finally:
        platform.stop()
