"""One polling loop for the tests, the benches and the drills: wait until a predicate holds.

Why one: each copy had its own idea of the deadline and the failure; a condition that never
comes must end as a TimeoutError that says what was awaited, never as an endless loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 120, interval: float = 0.5, what: str = "condition") -> Any:
    """The first truthy value of ``predicate()``, polled every ``interval`` s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
