"""The example agent next to ``switchboard dev``, so that ``make dev`` shows the console demo.

The worker lives in the checkout's ``examples/`` (it is not part of the installed package)
and runs as a child process with the public SDK, exactly as a user would run it; it stops
with the server. ``switchboard dev --no-agent`` leaves it out.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those


class AgentProcess:
    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, base_url: str) -> None:
        with self._lock:
            if self._stopped or self._process is not None:
                return
            if not (self.root / "examples" / "agent" / "__main__.py").is_file():
                log.info("example agent not started: no examples/agent in %s", self.root)
                return
            self._process = subprocess.Popen(
                [sys.executable, "-m", "examples.agent", "--url", base_url],
                cwd=self.root, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            log.info("example agent started (pid %d); console: %s/", self._process.pid, base_url)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
