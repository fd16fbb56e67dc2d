"""The partitioned pipeline on the real services: two assembler workers (one Faust consumer
group on the occupancy topic) and two counting workers (one consumer group sharing the Redis
shards) give the counts and topology of the offline estimator — also when one of each is
killed with SIGKILL mid-stream and the survivors take over its partitions and shards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from camtopo.core.grid import Network
from camtopo.core.topology import TopologyEstimator
from camtopo.operations.localstack import free_port
from camtopo.simulation import Simulation
from processors.trace import Record, simulated_records
from tests.integration.conftest import Stack
from tests.integration.test_streaming import (
    _assert_same_rows,
    _assert_same_transit,
    _first_range,
    _last_range,
    _offline,
    _produce,
    _trace,
)
from topology_store.store import TopologyStore

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


class Workers:
    """``camtopo process --role assemble|count`` subprocesses of one partitioned pipeline."""

    def __init__(self, stack: Stack, tmp_path: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = stack.settings.replace(
            partitioned={
                "assembler_group": f"asm-{tag}",
                "counter_group": f"cnt-{tag}",
                "ranges_topic": f"ranges-{tag}",
                "counter_shards_topic": f"shards-{tag}",
                # Several checkpoints per shard within the trace, so a restart finds shards
                # at different ranges (the default, 60, writes each shard once in 2 minutes).
                "counter_checkpoint_spread_ranges": 10,
            },
            # The paper's thresholds: overlaps appear within these short traces.
            algorithm={"o_ref": 20.0, "c_star": 0.8, "activity_gate": 0},
        )
        self.stack = stack
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env |= self.settings.environment()
        env["CAMTOPO_PROCESSOR_METRICS_PORT"] = str(free_port())
        return env

    def start(self, name: str, role: str) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "camtopo.cli", "process", "--role", role,
             "--network", str(self.stack.network_path)],
            env=self.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(30)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                pytest.fail(f"{name} exited {proc.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(stack: Stack, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(stack, tmp_path)
    yield w
    w.stop()


def _wait_all_shards(w: Workers, network: Network, range_id: int, timeout: float = 300) -> None:
    store = TopologyStore(w.stack.redis_url, network, w.settings)
    deadline = time.monotonic() + timeout
    low = -1
    while time.monotonic() < deadline:
        w.check_alive()
        low = min(store.shard_ranges().values())
        if low >= range_id:
            return
        time.sleep(0.5)
    from processors.topics import read_published

    pytest.fail(
        f"the slowest shard reached range {low}, not {range_id}; shards "
        f"{store.shard_ranges()}; last blocks {read_published(w.settings)}:\n{w.logs()}"
    )


def _last_shards(w: Workers, name: str) -> list[str]:
    """The shards a counting worker's log says it counts now."""
    found = re.findall(r"counting shards \[([\d, ]*)\]", (w.tmp / f"{name}.log").read_text())
    return found[-1].split(", ") if found else []


def _wait_shards_shared(w: Workers, counters: list[str], timeout: float = 120) -> None:
    """Until the counting group has settled: every counter owns its share of the 8 shards."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.check_alive()
        if all(len(_last_shards(w, c)) == 8 // len(counters) for c in counters):
            return
        time.sleep(0.5)
    pytest.fail(f"the counters never shared the shards:\n{w.logs()}")


def _assert_shards_equal_offline(w: Workers, network: Network, records: list) -> TopologyStore:
    """Every shard's rows equal the offline estimator's through the range that shard holds,
    and the leader's transit state equals the offline one through its range."""
    w.stop()  # no write may land while the store is read
    store = TopologyStore(w.stack.redis_url, network, w.settings)
    streamed = TopologyEstimator(network, w.settings.estimator_parameters())
    cp = store.load_into(streamed)
    assert cp is not None and min(cp.shard_ranges.values()) >= _last_range(w.settings, records)
    offline = _offline(network, w.settings, records)
    grid = w.settings.range_grid()
    shard = np.array([store.shard_of_window(i) for i in range(network.n_windows)])
    for range_id in sorted(set(cp.shard_ranges.values())):
        offline.advance(grid.first_tick(range_id + 1))
        held = [s for s, r in cp.shard_ranges.items() if r == range_id]
        _assert_same_rows(streamed, offline, np.flatnonzero(np.isin(shard, held)).tolist())
    assert offline.observations > 2000
    _assert_same_transit(store, streamed, _offline(network, w.settings, records))
    return store


def test_two_assemblers_and_two_counters_equal_the_offline_estimator(
    stack: Stack,
    workers: Workers,
) -> None:
    sim, records = _trace(20, 90, seed=5)
    sim.network.save(stack.network_path)
    _produce(stack.kafka.bootstrap, stack.topic, records)
    for n in (1, 2):
        workers.start(f"assemble-{n}", "assemble")
        workers.start(f"count-{n}", "count")
    _wait_all_shards(workers, sim.network, _last_range(workers.settings, records))
    # The group shared the shards: each counter ended up with half of them.
    assert [len(_last_shards(workers, f"count-{n}")) for n in (1, 2)] == [4, 4], workers.logs()
    store = _assert_shards_equal_offline(workers, sim.network, records)
    # The leader joined both workers' half-edges into the same overlap graph as offline.
    offline = _offline(sim.network, workers.settings, records)
    offline.finish()
    stored = {k.decode(): json.loads(v) for k, v in store.redis.hgetall(store.keys.edges).items()}
    overlaps = {k for k, e in stored.items() if e.get("kind", "overlap") == "overlap"}
    expected = {f"{e.a}|{e.b}" for e in offline.topology().camera_edges if e.kind == "overlap"}
    assert expected and overlaps == expected


def _produce_paced(bootstrap: str, topic: str, records: list[Record]) -> threading.Thread:
    """Records whose send time has come at once, the rest when it comes (a live stream)."""

    def run() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for rec in records:
            wait = rec.send_ms / 1000 - time.time()
            if wait > 0:
                producer.flush(10)
                time.sleep(wait)
            producer.produce(topic, rec.value, rec.camera.encode(), timestamp=rec.send_ms)
            producer.poll(0)
        producer.flush(60)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _live_trace(
    stack: Stack, seed: int, seconds: int, ahead: int = 40
) -> tuple[Simulation, list[Record], threading.Thread]:
    """A 20-camera trace that ends ``ahead`` s from now: most of it is on Kafka at once, the
    rest arrives live, so what the test does mid-stream lands while the workers follow it."""
    sim = Simulation.from_name("campus", 20, seed=seed)
    offset = int(time.time() * 1000) - sim.start_ms - (seconds - ahead) * 1000
    records = list(simulated_records(sim, seconds * sim.fps, 5, 300, offset))
    sim.network.save(stack.network_path)
    return sim, records, _produce_paced(stack.kafka.bootstrap, stack.topic, records)


def test_killing_an_assembler_and_a_counter_mid_stream_loses_and_repeats_nothing(
    stack: Stack,
    workers: Workers,
) -> None:
    sim, records, producing = _live_trace(stack, seed=6, seconds=120)
    last = _last_range(workers.settings, records)
    for n in (1, 2):
        workers.start(f"assemble-{n}", "assemble")
        workers.start(f"count-{n}", "count")
    first = _first_range(workers.settings, records)
    _wait_shards_shared(workers, ["count-1", "count-2"])
    _wait_all_shards(workers, sim.network, first + (last - first) // 2)
    workers.kill("count-2")  # no final checkpoint, no leave: its shards move after the session
    workers.kill("assemble-2")
    store = TopologyStore(stack.redis_url, sim.network, workers.settings)
    assert min(store.shard_ranges().values()) < last, "finished before the kill; lengthen it"
    producing.join(120)
    _wait_all_shards(workers, sim.network, last)
    assert "counting shards [0, 1, 2, 3, 4, 5, 6, 7]" in (workers.tmp / "count-1.log").read_text()
    _assert_shards_equal_offline(workers, sim.network, records)


def test_counters_ride_out_a_redis_restart_without_loss(stack: Stack, workers: Workers) -> None:
    """SIGKILL of Redis (AOF on) mid-stream: the counting workers rebuild from what Redis kept
    once it is back and replay the rest from the ranges topic."""
    sim, records, producing = _live_trace(stack, seed=8, seconds=100)
    last = _last_range(workers.settings, records)
    workers.start("assemble-1", "assemble")
    for n in (1, 2):
        workers.start(f"count-{n}", "count")
    first = _first_range(workers.settings, records)
    _wait_shards_shared(workers, ["count-1", "count-2"])
    _wait_all_shards(workers, sim.network, first + (last - first) // 2)
    stack.redis.kill()  # no shutdown save: only what reached the AOF survives
    time.sleep(3)
    stack.redis.start()
    producing.join(120)
    _wait_all_shards(workers, sim.network, last)
    for n in (1, 2):  # each noticed the restart and rebuilt from what Redis kept
        log = (workers.tmp / f"count-{n}.log").read_text()
        assert "Redis restarted or failed over since the shards were loaded" in log, workers.logs()
    _assert_shards_equal_offline(workers, sim.network, records)
