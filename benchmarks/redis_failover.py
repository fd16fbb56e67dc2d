"""Redis failover for the topology store: Sentinel (primary + replica + 3 sentinels) against
Redis Cluster (3 primaries + 3 replicas), side by side.

A writer increments one hash-tagged key every ``--interval-ms`` through the Sentinel-aware
(``redis.sentinel``) or the cluster (``redis.cluster.RedisCluster``) client, retrying through
the switch. The primary that holds the key is killed with SIGKILL; measured per trial:

- *failover*: from the kill to the first write the new primary acknowledged;
- *lost*: increments the old primary acknowledged that the new one does not hold
  (acknowledged count - final value), without and with ``WAIT 1`` after each write;
- *unreplicated*: with WAIT, writes no replica confirmed within 100 ms (after the failover the
  new primary has none until the killed one returns as its replica).

The Sentinel client is the store's (camtopo.connections: it follows the switch, which
redis-py 8.2's own reconnect does not, redis/redis-py#3874). Both on this machine's
redis-server, loopback, AOF on, failure detected after 1 s (``down-after-milliseconds`` /
``cluster-node-timeout``). Medians of ``--trials``.

    python -m benchmarks.redis_failover --trials 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError, ReadOnlyError, RedisError, TimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from camtopo.connections import _SentinelConnection

RESULTS = Path(__file__).resolve().parent / "results"
DETECT_MS = 1000
KEY = "{s0}failover"  # a hash-tagged shard key, as the store's


def free_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free and valid too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def start_server(folder: Path, port: int, *extra: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
         "--daemonize", "yes", "--pidfile", str(folder / "redis.pid"),
         "--logfile", str(folder / "redis.log"), "--appendonly", "yes", "--save", "", *extra],
        check=True,
    )  # fmt: skip
    wait_ping(port)


def start_sentinel(folder: Path, port: int, primary: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\ndaemonize yes\n"
        f"pidfile {folder / 'redis.pid'}\nlogfile {folder / 'redis.log'}\n"
        f"sentinel monitor bench 127.0.0.1 {primary} 2\n"
        f"sentinel down-after-milliseconds bench {DETECT_MS}\n"
        "sentinel failover-timeout bench 10000\nsentinel parallel-syncs bench 1\n"
    )
    subprocess.run(["redis-server", str(conf), "--sentinel"], check=True)
    wait_ping(port)


def wait_ping(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        except RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"redis on port {port} did not answer")


def wait_sentinels(ports: list[int], timeout: float = 30.0) -> None:
    """Until every sentinel knows the replica and the other sentinels (a failover needs a
    majority of them to elect a leader)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        masters = [redis.Redis(port=p).sentinel_master("bench") for p in ports]
        if all(m["num-slaves"] >= 1 and m["num-other-sentinels"] >= len(ports) - 1
               for m in masters):  # fmt: skip
            return
        time.sleep(0.2)
    raise RuntimeError("sentinels did not discover each other")


def wait_replicas_synced(ports: list[int], timeout: float = 60.0) -> None:
    """Until every replica among ``ports`` has finished its first sync (a replica that never
    synced cannot be promoted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = [redis.Redis(port=p).info("replication") for p in ports]
        if all(i.get("master_link_status", "up") == "up" for i in infos):
            return
        time.sleep(0.2)
    raise RuntimeError("a replica did not sync")


def pid(folder: Path) -> int:
    return int((folder / "redis.pid").read_text())


def kill_all(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(pid(folder), signal.SIGKILL)


def wait_one(client: Any) -> int:
    """WAIT 1 100 on the primary that holds KEY. WAIT names no key, so the cluster client
    would send it to some other node: it must be aimed at each shard's primary."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(KEY)
        return int(client.execute_command("WAIT", 1, 100, target_nodes=node))
    return int(client.execute_command("WAIT", 1, 100))


def write_through(client: Any, wait: bool, seconds: float, kill: Any, interval: float) -> dict:
    """INCR every ``interval`` s for ``seconds``; ``kill()`` at a third. Returns the figures."""
    acked = 0
    killed_at = served_at = None
    started = time.monotonic()
    retry_errors = 0
    unreplicated = 0
    while time.monotonic() - started < seconds:
        if killed_at is None and time.monotonic() - started > seconds / 3:
            kill()
            killed_at = time.monotonic()
        try:
            client.incr(KEY)
            acked += 1
            if killed_at is not None and served_at is None:
                served_at = time.monotonic()
            # After the failover the new primary has no replica until the old one is back.
            if wait and wait_one(client) < 1:
                unreplicated += 1
        except (ConnectionError, TimeoutError, ReadOnlyError, RedisError):
            retry_errors += 1
            time.sleep(0.05)
        time.sleep(interval)
    final = None
    deadline = time.monotonic() + 20
    while final is None and time.monotonic() < deadline:
        try:
            final = int(client.get(KEY) or 0)
        except RedisError:
            time.sleep(0.2)
    return {
        "failover_s": round(served_at - killed_at, 3) if served_at and killed_at else None,
        "acked": acked,
        "final": final,
        "lost": acked - final if final is not None else None,
        "errors": retry_errors,
        "unreplicated": unreplicated,
    }


def sentinel_trial(tmp: Path, wait: bool, seconds: float, interval: float) -> dict:
    ports = [free_port() for _ in range(5)]
    folders = [tmp / f"n{p}" for p in ports]
    start_server(folders[0], ports[0])
    start_server(folders[1], ports[1], "--replicaof", "127.0.0.1", str(ports[0]))
    for n in range(2, 5):
        start_sentinel(folders[n], ports[n], ports[0])
    try:
        wait_replicas_synced(ports[:2])
        wait_sentinels(ports[2:])
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=60)
        sentinel = Sentinel([("127.0.0.1", p) for p in ports[2:]], socket_timeout=1.0)
        client = sentinel.master_for(
            "bench",
            socket_timeout=1.0,
            retry=retry,
            retry_on_error=[ConnectionError],
            connection_class=_SentinelConnection,  # redis/redis-py#3874,
        )
        client.delete(KEY)
        out = write_through(client, wait, seconds, lambda: kill_all(folders[:1]), interval)
        out["processes"] = 5
        return out
    finally:
        kill_all(folders)


def cluster_trial(tmp: Path, wait: bool, seconds: float, interval: float) -> dict:
    ports = [free_port() for _ in range(6)]
    folders = [tmp / f"n{p}" for p in ports]
    for port, folder in zip(ports, folders, strict=True):
        start_server(folder, port, "--cluster-enabled", "yes",
                     "--cluster-config-file", str(folder / "nodes.conf"),
                     "--cluster-node-timeout", str(DETECT_MS))  # fmt: skip
    try:
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=60)
        client = RedisCluster(host="127.0.0.1", port=ports[0], socket_timeout=1.0, retry=retry)
        deadline = time.monotonic() + 30
        while client.cluster_info().get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not become ok")
            time.sleep(0.2)
        wait_replicas_synced(ports)
        client.delete(KEY)
        owner = client.get_node_from_key(KEY)
        victim = folders[ports.index(int(owner.port))]
        out = write_through(client, wait, seconds, lambda: kill_all([victim]), interval)
        out["processes"] = 6
        return out
    finally:
        kill_all(folders)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "redis_failover.json")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found: run infra/setup.sh")
    runs: dict[str, list[dict]] = {}
    for trial in range(args.trials):
        for name, fn in (("sentinel", sentinel_trial), ("cluster", cluster_trial)):
            for wait in (False, True):
                tmp = Path(tempfile.mkdtemp(prefix="camtopo-failover-"))
                try:
                    r = fn(tmp, wait, args.seconds, args.interval_ms / 1000)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                label = f"{name}{' + WAIT 1' if wait else ''}"
                runs.setdefault(label, []).append(r)
                print(f"trial {trial} {label:18s} {r}", flush=True)
    summary = {}
    for label, rs in runs.items():
        times = [r["failover_s"] for r in rs if r["failover_s"] is not None]
        summary[label] = {
            "failover_s_median": round(statistics.median(times), 3) if times else None,
            "failover_s_max": max(times) if times else None,
            "lost_max": max((r["lost"] for r in rs if r["lost"] is not None), default=None),
            "unreplicated_median": statistics.median(r["unreplicated"] for r in rs),
            "processes": rs[0]["processes"],
        }
        print(f"{label:18s} {summary[label]}")
    args.out.write_text(json.dumps({"detect_ms": DETECT_MS, "summary": summary, "runs": runs},
                                   indent=1) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
