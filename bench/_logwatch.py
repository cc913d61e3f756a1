"""When a file got its first byte and its last write, polled from another thread (benches only).

A simulator's own log file is the one view of "its first line" and "its last line" that is the
same for the platform and for a plain ``docker run``: both benches that compare the two use this.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


class LogWatch:
    """First non-empty moment and last write (mtime) of a file, polled every 20 ms."""

    def __init__(self, path: Path) -> None:
        self.path, self.first, self.last = path, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                st = self.path.stat()
                if st.st_size and self.first is None:
                    self.first = time.time()
                if st.st_size:
                    self.last = st.st_mtime
            except OSError:
                pass
            time.sleep(0.02)

    def stop(self) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join()
