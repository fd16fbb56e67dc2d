"""``camtopo serve``: the topology query service and live viewer."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    import logging

    from camtopo.core.grid import Network
    from camtopo.settings import get_settings
    from topology_store.service import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    network = Network.load(args.network) if args.network else None
    if args.demo:
        _fill_demo(settings, args.demo)
    serve(settings, host=args.host, port=args.port, network=network)
    return 0


def _fill_demo(settings: Any, n_cameras: int) -> None:
    """Fill the store from a small random run so the viewer has something to show."""
    from topology_store import synthetic
    from topology_store.store import TopologyStore

    net = synthetic.make_network(n_cameras)
    est = synthetic.run(net, settings, 3000)
    store = TopologyStore(settings.redis_url, net.network, settings)
    store.checkpoint(est, 0, {})
    store.update_topology(est, int(3000 * settings.tick_ms))
    print(f"demo: stored {len(net.network.cameras)} random cameras at {settings.redis_url}")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="HTTP query service and live viewer over the topology store",
        description=(
            "Serves the topology in Redis: /api/... (see /openapi.json), /metrics, /healthz and "
            "the live viewer at /. Host, port, Redis and token come from CAMTOPO_* settings."
        ),
    )
    parser.add_argument("--host", default=None, help="default CAMTOPO_HTTP_HOST")
    parser.add_argument("--port", type=int, default=None, help="default CAMTOPO_HTTP_PORT")
    parser.add_argument("--redis-url", default=None, help="default CAMTOPO_REDIS_URL")
    parser.add_argument(
        "--network", default=None, help="network.json (default: the one the processor saved)"
    )
    parser.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="first fill the store with a random N-camera run (no Kafka needed)",
    )
    parser.set_defaults(func=run)
