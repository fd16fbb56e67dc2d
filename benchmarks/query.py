"""Query service latency under concurrent load, on loopback against a real Redis.

Fills a store from a random N-camera run, starts ``camtopo serve``'s app in a child process,
then fires a bounded number of requests per endpoint with C concurrent clients and prints
p50/p99 (and a PNG bar plot). Example: ``python benchmarks/query.py --cameras 200 -c 16``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from tqdm import tqdm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(
    url: str, paths: list[str], requests: int, concurrency: int, headers: dict[str, str]
) -> dict[str, np.ndarray]:
    import aiohttp

    out: dict[str, np.ndarray] = {}
    # headers: the bearer token, when CAMTOPO_API_TOKEN is set (the service, started with the
    # same environment, then requires it). More clients than CAMTOPO_HTTP_MAX_CONCURRENT get 503s.
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in tqdm(paths, desc="endpoints"):
            latencies: list[float] = []
            todo = iter(range(requests))

            async def worker(path: str = path, todo=todo, latencies=latencies) -> None:  # type: ignore[no-untyped-def]
                for _ in todo:
                    t0 = time.perf_counter()
                    async with session.get(url + path) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{path}: HTTP {resp.status}")
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            out[path] = np.array(latencies)
            out[path + "#rps"] = np.array([requests / (time.perf_counter() - started)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--plot", default="out/query_latency.png")
    args = parser.parse_args()

    from camtopo.operations.localstack import RedisServer
    from camtopo.settings import Settings
    from topology_store import synthetic
    from topology_store.store import TopologyStore

    settings = Settings()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with RedisServer() as redis_server:
        print(f"filling the store from a random {args.cameras}-camera run …")
        net = synthetic.make_network(args.cameras, seed=1)
        est = synthetic.run(net, settings, 3000)
        store = TopologyStore(redis_server.url, net.network, settings, prefix=prefix)
        store.checkpoint(est, 0, {})
        store.update_topology(est, 300_000)
        graph = store.graph()
        edge = graph["edges"][0]
        win = store.window_overlaps(edge["a"], edge["b"])["windows"][0]
        port = free_port()
        code = (
            "from camtopo.settings import Settings; from topology_store.service import create_app;"
            " from aiohttp import web; "
            f"web.run_app(create_app(Settings(), redis_url={redis_server.url!r}, "
            f"prefix={prefix!r}), host='127.0.0.1', port={port}, print=None, access_log=None)"
        )
        server = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
        try:
            url = f"http://127.0.0.1:{port}"
            import urllib.request

            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            paths = [
                "/healthz",
                "/api/cameras",
                f"/api/cameras/{edge['a']}/neighbours",
                f"/api/overlaps/{edge['a']}/{edge['b']}",
                f"/api/evidence?a={edge['a']}:{win['a']}&b={edge['b']}:{win['b']}",
                "/api/partitions",
                "/api/graph",
            ]
            token = settings.service.api_token
            auth = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
            res = asyncio.run(load(url, paths, args.requests, args.concurrency, auth))
        finally:
            server.terminate()
            server.wait(30)

    print(
        f"\n{args.cameras} cameras, {len(graph['edges'])} edges; {args.requests} requests per "
        f"endpoint, {args.concurrency} concurrent clients, loopback, one server process"
    )
    print(f"{'endpoint':<48} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    rows = []
    for path in paths:
        lat = res[path] * 1000
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        label = path.split("?")[0] if "evidence" in path else path
        rows.append((label, p50, p99))
        print(f"{label:<48} {p50:8.2f} {p99:8.2f} {res[path + '#rps'][0]:8.0f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r[1] for r in rows], height=0.4, label="p50")
    ax.barh(y + 0.2, [r[2] for r in rows], height=0.4, label="p99")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("latency (ms)")
    ax.set_title(f"query service, {args.cameras} cameras, {args.concurrency} concurrent clients")
    ax.legend()
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
