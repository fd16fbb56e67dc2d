#!/usr/bin/python3
"""Serve video files as RTSP streams with GStreamer's RTSP server (Debian's python3-gi).

    /usr/bin/python3 infra/rtsp_server.py --port 8554 cam000=footage/cam000.avi [cam001=...]

Each ``NAME=FILE`` becomes ``rtsp://HOST:PORT/NAME``, Motion-JPEG over RTP (RFC 2435), which
OpenCV's FFmpeg backend reads. The file is decoded and re-encoded as baseline 4:2:0 JPEG
because RTP/JPEG carries only that: the JPEGs inside an AVI written by OpenCV pass through
rtpjpegpay but FFmpeg decodes them with errors. Each client connection plays the file once
from the start, at its own frame rate (the server paces it). Prints ``ready`` once it listens.

Run it with the *system* python3 (``gi`` comes from apt: gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-rtsp, gstreamer1.0-plugins-good; infra/setup.sh installs them), not the venv.
"""

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( filesrc location={path} ! decodebin ! videoconvert ! video/x-raw,format=I420 "
    "! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )"
)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8554)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("streams", nargs="+", metavar="NAME=FILE")
    args = p.parse_args(argv)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.streams:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            p.error(f"{spec}: expected NAME=FILE with an existing file")
        factory = GstRtspServer.RTSPMediaFactory()
        # GStreamer's launch syntax: quote the path so spaces survive.
        factory.set_launch(PIPELINE.format(path=f'"{Path(path).resolve()}"'))
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    # SIGTERM ends the main loop cleanly; SIGKILL (the test's "crash") needs nothing.
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
