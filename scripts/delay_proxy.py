#!/usr/bin/env python3
"""A TCP proxy that answers each request DELAY ms late, for benchmarks against an object store
that is not on loopback (scripts/bench-e2e.sh, S3_DELAY_MS): the first bytes of every response
(upstream bytes after client bytes) wait DELAY ms, as one network round trip would add.

    scripts/delay_proxy.py --listen 19400 --target 127.0.0.1:9000 --delay-ms 40
"""
import argparse
import asyncio


async def pipe(reader, writer, on_data):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await on_data(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_r, client_w, target, delay):
    host, port = target.rsplit(":", 1)
    try:
        up_r, up_w = await asyncio.open_connection(host, int(port))
    except OSError:
        client_w.close()
        return
    state = {"asked": False}

    async def request(_):
        state["asked"] = True

    async def response(_):
        if state["asked"]:
            state["asked"] = False
            await asyncio.sleep(delay)

    await asyncio.gather(pipe(client_r, up_w, request), pipe(up_r, client_w, response))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: handle(r, w, a.target, a.delay_ms / 1000), "127.0.0.1", a.listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
