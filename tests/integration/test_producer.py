"""Camera-side producers against the REAL Kafka broker started by infra/."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camtopo.core.grid import Grid
from camtopo.formats import avro
from camtopo.settings import Settings
from producers.camera import VisionFeed, replay_clock
from producers.producer import OccupancyPublisher, ProducerLoop
from producers.simulated import SimulatedNetwork
from producers.sources import END, ERROR, MISSING, OK, open_source
from tests.kafka_reading import consume_all

pytestmark = pytest.mark.kafka
GRID = Grid()


def frames_by_camera(messages: list[Any]) -> dict[str, list[dict[str, Any]]]:
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in messages:
        record = avro.decode(avro.OCCUPANCY, msg.value())
        assert msg.key().decode() == record["camera"]
        frames[record["camera"]].extend(record["frames"])
    return frames


def test_records_are_consumed_back_field_for_field(kafka, kafka_topic) -> None:
    topic = kafka_topic(partitions=3)
    net = SimulatedNetwork.build("campus", 8, seed=3, epoch_ms=1_700_000_000_000, density=3.0)
    sent: list[dict[str, Any]] = []
    publisher = OccupancyPublisher(
        kafka.bootstrap,
        topic,
        Settings(),
        producer_id="roundtrip",
        on_delivery=lambda _c, rec, err: sent.append(rec) if err is None else None,
    )
    feeds = [net.exact_feed(c) for c in range(8)]
    summary = ProducerLoop(
        feeds,
        publisher,
        frames_per_record=4,
        realtime=False,
        before_tick=net.advance,
        max_ticks=50,
    ).run()
    assert summary.undelivered == 0 and publisher.stats.failed == 0
    assert len(sent) == publisher.stats.records == 8 * 13  # 50 frames = 12 x 4 + a final 2

    got = consume_all(kafka.bootstrap, topic, len(sent))
    decoded = [avro.decode(avro.OCCUPANCY, m.value()) for m in got]
    key = lambda r: (r["camera"], r["frames"][0]["seq"])  # noqa: E731
    assert sorted(decoded, key=key) == sorted(sent, key=key)
    assert all(r["grid"] == GRID.to_json() and r["producer"] == "roundtrip" for r in decoded)
    occupied = [f for r in decoded for f in r["frames"] if f["occupied"]]
    assert occupied, "a busy campus must show somebody in 400 camera-frames"
    for f in occupied:
        assert f["occupied"] == sorted(set(f["occupied"])) and f["status"] == OK
    # One partition per camera: a camera's records keep their order.
    by_cam = frames_by_camera(got)
    for frames in by_cam.values():
        assert [f["seq"] for f in frames] == list(range(50))


@pytest.mark.slow
def test_broker_restart_loses_and_duplicates_nothing(kafka, kafka_topic) -> None:
    topic = kafka_topic(partitions=3)
    net = SimulatedNetwork.build("campus", 6, seed=4, epoch_ms=1_700_000_000_000)
    publisher = OccupancyPublisher(kafka.bootstrap, topic, Settings(), producer_id="restart")
    stop = threading.Event()
    loop = ProducerLoop(
        [net.exact_feed(c) for c in range(6)],
        publisher,
        frames_per_record=2,
        realtime=True,
        before_tick=net.advance,
        stop=stop,
    )
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(summary=loop.run()))
    worker.start()
    try:
        time.sleep(2.0)
        before = publisher.stats.delivered
        kafka.stop()  # a clean broker shutdown mid-production
        time.sleep(3.0)
        kafka.start()
        time.sleep(3.0)
    finally:
        stop.set()
        worker.join(timeout=120)
    summary = result["summary"]
    assert before > 0
    assert summary.undelivered == 0 and publisher.stats.failed == 0
    assert publisher.stats.delivered == publisher.stats.records

    frames = frames_by_camera(consume_all(kafka.bootstrap, topic, publisher.stats.records))
    assert set(frames) == set(net.sim.cameras.ids)
    for camera, fs in frames.items():
        seqs = [f["seq"] for f in fs]
        # Contiguous from 0, no gap (loss) and no repeat (duplicate), in order.
        assert seqs == list(range(summary.per_camera[camera]["seq"])), camera
    assert summary.ticks >= 60  # the loop really ran across the restart (8 s at 10 FPS)


class MjpegStream:
    """A real HTTP MJPEG server that can vanish mid-stream."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.frames = [
            cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))[1].tobytes()
            for _ in range(5)
        ]
        self.alive = threading.Event()
        self.alive.set()
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while stream.alive.is_set():
                    f = stream.frames[i % len(stream.frames)]
                    i += 1
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                    try:
                        self.wfile.write(head % len(f) + f + b"\r\n")
                    except OSError:
                        return
                    time.sleep(0.1)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def vanish(self) -> None:
        self.alive.clear()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_bad_sources_report_status_while_other_cameras_keep_going(
    kafka, kafka_topic, tmp_path: Path
) -> None:
    topic = kafka_topic(partitions=3)
    good_video = tmp_path / "good.avi"
    writer = cv2.VideoWriter(str(good_video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(40):
        writer.write(np.full((240, 320, 3), 100 + i, np.uint8))
    writer.release()
    bad_video = tmp_path / "bad.avi"
    bad_video.write_bytes(b"RIFF\x00\x00junk" * 100)
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i in range(30):
        data = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
        (folder / f"{i:04d}.jpg").write_bytes(data[: len(data) // 3] if i == 7 else data)
    stream = MjpegStream()

    settings = Settings(producer={"source_read_timeout_s": 1.0, "source_reconnect_s": 0.5})
    clock = replay_clock(1_700_000_000_000, 10)
    specs = {
        "good": str(good_video),
        "bad": str(bad_video),
        "jpegs": str(folder),
        "live": stream.url,
    }
    feeds = [
        VisionFeed(cam, open_source(spec, 1.0, 0.5), GRID, clock=clock)
        for cam, spec in specs.items()
    ]
    publisher = OccupancyPublisher(kafka.bootstrap, topic, settings, producer_id="bad")
    stop = threading.Event()
    loop = ProducerLoop(feeds, publisher, frames_per_record=5, realtime=True, stop=stop)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(summary=loop.run()))
    worker.start()
    time.sleep(3.5)
    stream.vanish()
    time.sleep(3.0)
    stop.set()
    worker.join(timeout=60)
    assert publisher.stats.failed == 0 and result["summary"].undelivered == 0

    frames = frames_by_camera(consume_all(kafka.bootstrap, topic, publisher.stats.records))
    status = {cam: [f["status"] for f in fs] for cam, fs in frames.items()}

    # The good video: every frame analysed, then END; never disturbed by its neighbours.
    assert status["good"] == [OK] * 40 + [END]
    # The unreadable video: one ERROR naming the file, then END.
    assert status["bad"] == [ERROR, END]
    assert "bad.avi" in frames["bad"][0]["detail"]
    # The corrupt JPEG: an ERROR for that frame only, naming it; the camera carries on.
    assert status["jpegs"] == [OK] * 7 + [ERROR] + [OK] * 22 + [END]
    assert "0007.jpg" in frames["jpegs"][7]["detail"]
    # The live stream: frames while it lives, then MISSING / ERROR -- never empty OK frames.
    live = frames["live"]
    first_ok = status["live"].index(OK)
    last_ok = len(status["live"]) - 1 - status["live"][::-1].index(OK)
    assert status["live"][first_ok : last_ok + 1].count(OK) >= 15
    after = status["live"][last_ok + 1 :]
    assert len(after) >= 20 and set(after) <= {MISSING, ERROR}
    assert ERROR in after and any("stream" in (f["detail"] or "") for f in live[last_ok + 1 :])
    # Every camera numbered every tick it served, without gaps.
    for cam, fs in frames.items():
        assert [f["seq"] for f in fs] == list(range(len(fs))), cam
