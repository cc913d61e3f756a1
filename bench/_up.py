"""A `make up` of its own for a bench: ``python -m deployments.up`` in a subprocess, with a fresh
OPEVA_HOME, a hosts file written there, free private ports and its own jobs network.

Why a subprocess and not bench/_platform.py: what a user gets from `make up` (MLflow, its relay,
the reference tag, the supervisor of children, the banner) is what these benches judge, so they
start exactly that and talk to it only over HTTP (REST API, Prefect API, MLflow API) and the
`prefect` CLI, as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.platform import free_port  # noqa: E402

UP_BANNER = "OPEVA platform is up."


class Up:
    """One platform; ``with Up(hosts_yaml) as up:`` starts it and stops it (SIGTERM, which `make up`
    handles as Ctrl-C: a bench started in the background inherits SIGINT ignored)."""

    def __init__(self, hosts_yaml: str, *, start_timeout: float = 900.0) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="opeva-realsim-"))
        self.data_dir = self.home / "data"  # fresh: nothing in it before `make up`
        self.hosts_file = self.home / "hosts.yaml"
        self.hosts_file.write_text(hosts_yaml)
        self.ports = {k: free_port() for k in ("OPEVA_PREFECT_PORT", "OPEVA_API_PORT", "OPEVA_MONGO_PORT", "OPEVA_MLFLOW_PORT")}
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}, "OPEVA_HOME": str(self.home),
                    "OPEVA_HOSTS_FILE": str(self.hosts_file), "OPEVA_JOBS_NETWORK": f"opeva-jobs-bench-{self.ports['OPEVA_API_PORT']}"}
        for inherited in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "OPEVA_DATA_DIR"):
            self.env.pop(inherited, None)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.log = self.home / "up.log"
        self.api_url = f"http://127.0.0.1:{self.ports['OPEVA_API_PORT']}"
        self.prefect_api_url = f"http://127.0.0.1:{self.ports['OPEVA_PREFECT_PORT']}/api"
        self.mlflow_url = f"http://127.0.0.1:{self.ports['OPEVA_MLFLOW_PORT']}"
        self.started_in: float | None = None

    def __enter__(self) -> Up:
        t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "deployments.up"], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        while UP_BANNER not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() - t0 > self.start_timeout:
                self.__exit__(None, None, None)
                raise RuntimeError(f"make up did not come up (see {self.log}):\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        self.started_in = time.monotonic() - t0
        auth = (self.home / "prefect" / "auth_string").read_text().strip()
        user, _, password = auth.partition(":")
        self.cli_env = {**self.env, "PREFECT_API_URL": self.prefect_api_url, "PREFECT_API_AUTH_STRING": auth}
        self.api = httpx.Client(base_url=self.api_url, timeout=120)
        self.prefect = httpx.Client(base_url=self.prefect_api_url, auth=(user, password), timeout=60)
        self.mlflow = httpx.Client(base_url=self.mlflow_url, timeout=30)
        return self

    def __exit__(self, *_exc: object) -> None:
        for client in ("api", "prefect", "mlflow"):
            if hasattr(self, client):
                getattr(self, client).close()
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # `make up` keeps its jobs network when it stops (it is reused by the next start); this one is ours alone
        subprocess.run(["docker", "network", "rm", self.env["OPEVA_JOBS_NETWORK"]], capture_output=True)

    # --- what every bench reads ---------------------------------------------------------------
    def wait_final(self, job_id: str, timeout: float = 1800.0, poll: float = 0.2) -> str:
        t0 = time.monotonic()
        while (status := self.api.get(f"/status/{job_id}").json()["status"]) not in ("finished", "failed", "stopped", "canceled"):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{job_id} still {status} after {timeout} s")
            time.sleep(poll)
        return status

    def states(self, job_id: str) -> dict[str, float]:
        """Prefect's state history of the run: type -> server timestamp (epoch seconds)."""
        from datetime import datetime

        rows = self.prefect.get("/flow_run_states/", params={"flow_run_id": job_id}).json()
        return {r["type"]: datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp() for r in rows}

    def run_count(self) -> int:
        return self.prefect.post("/flow_runs/count", json={}).json()

    def containers_of(self, job_id: str) -> list[str]:
        """Every container of the job, exited ones included: its simulator and its supervisor."""
        names: set[str] = set()
        for label in (f"opeva.job_id={job_id}", f"io.prefect.flow-run-id={job_id}"):
            out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True).stdout
            names.update(out.split())
        return sorted(names)
