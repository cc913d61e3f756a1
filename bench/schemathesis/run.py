"""Run `st run <api>/openapi.json --checks all` against a fast-tier platform (see ../schemathesis_run.sh).

Kept out of bench/*.py, which `make bench` runs as benchmarks.

The platform is the fast tier's: a Prefect server, the MongoDB-wire server, process work pools
with no worker (launched jobs stay queued) and the API, on free loopback ports. Prints the
command and schemathesis's summary; exits with schemathesis's code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import running_platform  # noqa: E402

DEFAULT_ARGS = ["--checks", "all", "--workers", "1", "--max-examples", "10", "--phases", "examples,coverage,fuzzing,stateful",
                "--suppress-health-check", "all"]


# Both mounts (docs/api.md): the root (today's contract) and ai-manager-ui's; each has its own
# /openapi.json, whose `servers` entry (FastAPI adds the mount's root path) points the calls there.
MOUNTS = ("", "/ai-manager-ui")


def run_st(api_url: str, extra: list[str]) -> int:
    st = shutil.which("st") or "st"
    codes = []
    for mount in (m for m in MOUNTS if m in os.environ.get("OPEVA_ST_MOUNTS", ",".join(MOUNTS)).split(",")):
        cmd = [st, "--config-file", str(ROOT / "bench" / "schemathesis" / "schemathesis.toml"), "run", f"{api_url}{mount}/openapi.json", *DEFAULT_ARGS, *extra]
        print(f"== mount {mount or '/'}\n$", " ".join(cmd), flush=True)
        codes.append(subprocess.run(cmd, env={**os.environ, "NO_COLOR": "1"}).returncode)
        print(f"== mount {mount or '/'}: exit {codes[-1]}", flush=True)
    return max(codes, default=0)


def main(extra: list[str]) -> int:
    if os.environ.get("OPEVA_API_URL"):
        return run_st(os.environ["OPEVA_API_URL"].rstrip("/"), extra)
    with running_platform("opeva-st-", docker=False) as platform:
        return run_st(platform.api_url, extra)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
