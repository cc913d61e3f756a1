"""A Docker host's worker: Prefect's Docker worker (prefect-docker), reconnecting quickly.

Why not plain ``prefect worker start --type docker``: the same worker, with one change, its
channel to the server retried every few seconds after a lost link instead of up to 30 s apart
(deployments/worker_channel.py), so a host is online in ``/hosts`` soon after its link returns.
Everything else (job template, limit, heartbeats, polling) is Prefect's.

    python -m deployments.docker_worker --pool lab-1 --name lab-1@host [--limit 2]
"""

from __future__ import annotations

import warnings

from prefect_docker.worker import DockerWorker

from deployments.worker_channel import QuickChannelReconnect, serve_main

warnings.filterwarnings("ignore", message="Type 'OpevaDockerWorker'.*overridden", category=UserWarning)  # same pool type, on purpose


class OpevaDockerWorker(QuickChannelReconnect, DockerWorker):
    """Prefect's Docker worker whose channel reconnects at most a few seconds apart."""


def main() -> None:
    serve_main(OpevaDockerWorker, __doc__.splitlines()[0], forward_signals=True)  # as `prefect worker start` did


if __name__ == "__main__":
    main()
