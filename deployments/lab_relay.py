"""The Prefect API on the lab bridge's address (``make lab``, deployments/lab_net.py).

Why a relay: the lab's hosts reach this machine only at the bridge's address, and the Prefect
server listens on 127.0.0.1 (it must not listen on 0.0.0.0, which would offer it to every network
of the machine). This process listens on the bridge's address alone and passes each connection,
bytes unchanged (HTTP and websockets alike), to the server's loopback port.

Usage: python -m deployments.lab_relay --listen 10.211.0.1:4200 --to 127.0.0.1:4200
"""

from __future__ import annotations

import argparse
import asyncio


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except RuntimeError:
            pass


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=_address, help="address:port to listen on (the bridge's)")
    parser.add_argument("--to", required=True, type=_address, help="address:port to forward to (the server's loopback)")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.to))


if __name__ == "__main__":
    main()
