"""Run `st run <api>/openapi.json --checks all` against a fast-tier platform (see schemathesis_run.sh).

The platform is the fast tier's: a Prefect server, the MongoDB-wire server, process work pools
with no worker (launched jobs stay queued) and the API, on free loopback ports. Prints the
command and schemathesis's summary; exits with schemathesis's code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import hosts_yaml, new_platform, pointed_at  # noqa: E402

DEFAULT_ARGS = ["--checks", "all", "--workers", "1", "--max-examples", "10", "--phases", "examples,coverage,fuzzing,stateful",
                "--suppress-health-check", "all"]


def run_st(api_url: str, extra: list[str]) -> int:
    st = shutil.which("st") or "st"
    cmd = [st, "--config-file", str(ROOT / "bench" / "schemathesis.toml"), "run", f"{api_url}/openapi.json", *DEFAULT_ARGS, *extra]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env={**os.environ, "NO_COLOR": "1"}).returncode


def main(extra: list[str]) -> int:
    if os.environ.get("OPEVA_API_URL"):
        return run_st(os.environ["OPEVA_API_URL"].rstrip("/"), extra)
    home = Path(tempfile.mkdtemp(prefix="opeva-st-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(hosts_yaml(platform.data_dir))
    with pointed_at(platform, hosts_file):
        try:
            platform.start_prefect_server()
            platform.start_mongo()
            platform.setup_pools(hosts_file, docker=False)
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
            return run_st(platform.api_url, extra)
        finally:
            platform.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
