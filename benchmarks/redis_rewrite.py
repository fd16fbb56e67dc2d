"""What an AOF rewrite of the count rows costs Redis, with and without RDB compression.

Redis rewrites its append-only file in a forked child once the file has doubled; with the
RDB preamble (the default) the child dumps every value, LZF-compressed when
``rdbcompression`` is on. At 1,000 cameras those children took up to half a core in the
streaming benchmark. This fills a Redis with row blobs shaped like the counting workers'
(the real encoder; 1,000 cameras, ~180 live segments per row) and times BGREWRITEAOF side by
side, alternating the setting, medians of ``--repeats``.

    python -m benchmarks.redis_rewrite --rows 50000
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from topology_store.blobs import encode_row

RESULTS = Path(__file__).resolve().parent / "results"
CAMERAS, WINDOWS_PER_CAMERA = 1000, 108


def row_blobs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct rows: O up to 4,096, 180 live segments with Poisson counts, half zero."""
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        o = rng.integers(0, 4096, CAMERAS).astype(np.uint16)
        state = np.full(CAMERAS, -1, np.int8)
        live = rng.choice(CAMERAS, 180, replace=False)
        state[live] = 0
        p = np.zeros(CAMERAS * WINDOWS_PER_CAMERA, np.uint16)
        for c in live:
            seg = rng.poisson(rng.uniform(0, 200), WINDOWS_PER_CAMERA).astype(np.uint16)
            seg[rng.random(WINDOWS_PER_CAMERA) < 0.5] = 0
            p[c * WINDOWS_PER_CAMERA : (c + 1) * WINDOWS_PER_CAMERA] = seg
        blobs.append(encode_row(o, state, p, 100))
    return blobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rewrite_seconds(compress: bool, rows: int, blobs: list[bytes], repeats: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="camtopo-aof-"))
    port = free_port()
    subprocess.run(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
         "--daemonize", "yes", "--pidfile", str(folder / "pid"), "--appendonly", "yes",
         "--save", "", "--rdbcompression", "yes" if compress else "no",
         "--auto-aof-rewrite-percentage", "0"],
        check=True,
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        pipe = client.pipeline(transaction=False)
        for i in range(rows):  # a unique tail, so no two values are equal
            pipe.set(f"row:{i}", blobs[i % len(blobs)] + i.to_bytes(4, "little"))
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.bgrewriteaof()
            time.sleep(0.1)
            while client.info("persistence")["aof_rewrite_in_progress"]:
                time.sleep(0.02)
            seconds.append(time.perf_counter() - started)
        aof = sum(f.stat().st_size for f in (folder / "appendonlydir").iterdir())
        return {
            "rdbcompression": compress,
            "data_gb": client.info("memory")["used_memory"] / 2**30,
            "rewrite_s": seconds,
            "rewrite_s_median": statistics.median(seconds),
            "aof_gb": aof / 2**30,
        }
    finally:
        client.shutdown(nosave=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    blobs = row_blobs(400)
    print(f"{args.rows} rows of ~{np.mean([len(b) for b in blobs]) / 1024:.1f} KB", flush=True)
    runs = [rewrite_seconds(c, args.rows, blobs, args.repeats) for c in (True, False, True, False)]
    for run in runs:
        print(
            f"rdbcompression {'yes' if run['rdbcompression'] else 'no ':3}: data "
            f"{run['data_gb']:.2f} GB, rewrite {run['rewrite_s_median']:.2f} s (median), "
            f"AOF {run['aof_gb']:.2f} GB"
        )
    on = statistics.median(r["rewrite_s_median"] for r in runs if r["rdbcompression"])
    off = statistics.median(r["rewrite_s_median"] for r in runs if not r["rdbcompression"])
    print(f"rewrite time with compression / without: {on / off:.1f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "redis_rewrite.json"
    out.write_text(json.dumps({"rows": args.rows, "runs": runs, "ratio": on / off}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
