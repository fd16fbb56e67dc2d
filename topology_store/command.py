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
        settings = settings.replace(redis={"url": args.redis_url})
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
    store = TopologyStore(settings.redis.url, net.network, settings)
    store.checkpoint(est, 0, {})
    store.update_topology(est, int(3000 * settings.grid.tick_ms))
    print(f"demo: stored {len(net.network.cameras)} random cameras at {settings.redis.url}")


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

    store = subparsers.add_parser(
        "store",
        help="inspect or repair the topology store in Redis",
        description=(
            "show: the stored checkpoint, as /health reports it. rewind: bring every stored "
            "range and tick that lies ahead of this machine's clock back to the last range the "
            "clock has closed, keeping the counts (after a forged or skewed timestamp carried "
            "a processor clock ahead; stop every processor first). Redis and the range "
            "settings come from CAMTOPO_* settings."
        ),
    )
    store.add_argument("action", choices=("show", "rewind"))
    store.add_argument("--network", required=True, help="network.json of the stored cameras")
    store.set_defaults(func=run_store)


def run_store(args: argparse.Namespace) -> int:
    import json

    from camtopo.core.grid import Network
    from camtopo.estimate import network_clock
    from camtopo.settings import get_settings
    from topology_store.store import TopologyStore

    network = Network.load(args.network)
    settings = network_clock(get_settings(), network)  # range ids count the network's ticks
    store = TopologyStore(settings.redis.url, network, settings)
    try:
        if args.action == "rewind":
            moved = store.rewind()
            for key, old in moved.items():
                print(f"{key}: {old} -> rewound")
            print(f"rewound {len(moved)} stored marks" if moved else "nothing lies ahead")
        print(json.dumps(store.health(), indent=2))
    finally:
        store.close()
    return 0
