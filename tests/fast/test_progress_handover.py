"""flows.supervise.mirror hands a job's progress to Prefect at most once a second, and its last
value at the end: a simulator that rewrites progress.json at every step (OPEVA's image does)
must not turn into five Prefect artifact writes a second, and the last state must never be lost."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from core.layout import DataRoot
from flows.supervise import mirror

STEPS = 120
STEP_SECONDS = 0.02  # 2.4 s of steps: 50 rewrites a second


class ProgressWriter:
    """A running simulator as mirror sees it: one output line, progress.json rewritten every step."""

    def __init__(self, progress_file) -> None:
        self.progress_file = progress_file
        self.lines: queue.Queue = queue.Queue()
        self.exit_code, self._ended = None, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.lines.put("started")
        for step in range(1, STEPS + 1):
            tmp = self.progress_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"progress": 100 * step / STEPS, "step": step}))
            tmp.replace(self.progress_file)
            time.sleep(STEP_SECONDS)
        self.lines.put(None)
        self.exit_code = 0
        self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()


def test_progress_reaches_prefect_at_most_once_a_second_and_its_last_value_always(tmp_path):
    job = DataRoot(tmp_path).job("0189dbbd-f06a-4976-82f9-e79a884d9a29").create()
    handed: list[tuple[float, int]] = []
    started = time.monotonic()
    run = mirror(ProgressWriter(job.progress_file), job=job, logger=logging.getLogger("test.progress"),
                 on_progress=lambda data: handed.append((time.monotonic(), data["step"])))
    took = time.monotonic() - started

    assert run.returncode == 0
    assert handed and handed[-1][1] == STEPS, f"the last step must reach Prefect, got {handed}"
    gaps = [b - a for (a, _), (b, _) in zip(handed, handed[1:-1])]  # the final hand-over may come sooner
    assert all(gap >= 0.95 for gap in gaps), f"hand-overs closer than a second: {gaps}"
    assert len(handed) <= took + 2, f"{len(handed)} hand-overs in {took:.1f} s"
    assert len(handed) >= 2, "progress must also be handed while the job runs, not only at its end"
