"""The relay that puts the platform's MLflow server, and nothing else, on the jobs network.

Two copies of this byte-for-byte forwarder join the jobs network to MLflow:

- on the host (a platform child): ``--listen unix:<home>/run/mlflow/mlflow.sock --to 127.0.0.1:<port>``;
- in a container (runtime image, uid 65534, no capabilities, read-only root, bounded memory and
  pids) on the jobs network under the alias ``opeva-mlflow``, with only the socket's folder
  mounted (read-only): ``--listen 0.0.0.0:5000 --to unix:/run/opeva-mlflow/mlflow.sock``.

The jobs network has no host address (flows/job_network.py), so this is the only way from a
job to any platform service. (MLflow's uvicorn binds one address and its DNS-rebinding guard
works only under uvicorn, so MLflow cannot listen on the socket itself.)
Standard library only; no Prefect.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

MAX_CONNECTIONS = 64
IDLE_SECONDS = 600  # a connection silent this long is closed
CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(CHUNK), IDLE_SECONDS)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


def _open(address: str):
    if address.startswith("unix:"):
        return asyncio.open_unix_connection(address[len("unix:"):])
    host, _, port = address.rpartition(":")
    return asyncio.open_connection(host, int(port))


async def _start(address: str, handle):
    if address.startswith("unix:"):
        import os

        path = address[len("unix:"):]
        if os.path.exists(path):
            os.unlink(path)
        server = await asyncio.start_unix_server(handle, path)
        os.chmod(path, 0o666)  # the container's relay runs as uid 65534; the folder (0755) is the platform's
        return server
    host, _, port = address.rpartition(":")
    return await asyncio.start_server(handle, host or "0.0.0.0", int(port))


async def _serve(listen: str, target: str) -> None:
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if slots.locked():
            client_w.close()
            return
        async with slots:
            try:
                up_r, up_w = await _open(target)
            except OSError as exc:
                print(f"[WARNING] {target} does not answer: {exc}", file=sys.stderr, flush=True)
                client_w.close()
                return
            await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
            for w in (client_w, up_w):
                w.close()

    server = await _start(listen, handle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay listening on {listen} -> {target}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT or unix:PATH")
    parser.add_argument("--to", required=True, help="HOST:PORT or unix:PATH")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.listen, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
