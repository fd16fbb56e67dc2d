"""``camtopo process``: run the streaming processor (a Faust worker) for one network."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "process",
        help="count exclusions from the occupancy topic into Redis (Faust worker)",
        description=(
            "Consume occupancy records from Kafka, assemble Tr-second event-time ranges, close "
            "them Td seconds after their end, count exclusions per closed range, checkpoint the "
            "counts to Redis and publish topology changes. Kafka, Redis, topics and ports come "
            "from CAMTOPO_* settings."
        ),
    )
    p.add_argument("--network", required=True, help="network.json of the cameras to expect")
    p.add_argument(
        "--engine", default="fast", choices=("fast", "exact"), help="exact = paper semantics"
    )
    p.add_argument(
        "--role",
        default="single",
        choices=("single", "assemble", "count"),
        help="single: one worker does everything (default); assemble / count: the two stages "
        "of the partitioned pipeline, each scaled out by starting more of them "
        "(docs/streaming.md)",
    )
    p.add_argument("--loglevel", default="warning", help="faust worker log level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from faust import Worker
    from prometheus_client import start_http_server

    from camtopo.core.grid import Network, NetworkError
    from camtopo.estimate import network_clock
    from camtopo.settings import get_settings
    from processors.topics import ensure_topics
    from topology_store.store import TopologyStore

    network = Network.load(args.network)
    if network.mixed_rates:
        # Records carry one frame per tick (camtopo produce samples every camera at
        # CAMTOPO_FPS); a camera sending at its own rate would lose frames as duplicates or
        # give no opportunities between its frames.
        rates = ", ".join(
            f"{c} {network.rate(i)}"
            for i, c in enumerate(network.cameras)
            if network.rate(i) != network.fps
        )
        raise NetworkError(
            f"{args.network}: 'camera_fps' gives cameras their own frame rates ({rates} fps); "
            f"the streaming processor takes every camera at the network's fps "
            f"({network.fps}), as camtopo produce sends them: drop 'camera_fps' (per-camera "
            "rates are for camtopo estimate)"
        )
    # A tick is one frame of the network (as offline): its ranges and padding in its own rate.
    settings = network_clock(get_settings(), network)
    logging.basicConfig(level=args.loglevel.upper())
    # Before anything reads Kafka: a topic the broker auto-created (1 partition) would leave
    # this worker owning part of the partitions it waits for, counting nothing. A wrong count
    # stops here with what to do (TopicMismatch, one line from the command line).
    ensure_topics(settings, "single" if args.role == "single" else "all")
    if settings.processor.metrics_port:
        start_http_server(settings.processor.metrics_port, addr=settings.service.host)
    if args.role == "count":
        from processors.counter import run_counter

        store = TopologyStore(settings.redis.url, network, settings)
        return run_counter(network, settings, store)
    if args.role == "assemble":
        from processors.assembler import create_assembler_app
        from processors.topics import read_published

        app, _ = create_assembler_app(network, settings, read_published(settings))
        print(
            f"camtopo process --role assemble: {network.n_cameras} cameras; consuming "
            f"{settings.kafka.occupancy_topic}, publishing {settings.partitioned.ranges_topic}",
            flush=True,
        )
        # Runs the worker until it stops, then exits the process (typed NoReturn).
        Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    from processors.app import create_app

    store = TopologyStore(settings.redis.url, network, settings)
    app, proc = create_app(network, settings, store, engine=args.engine)
    cp = proc.restore()
    if cp is not None:
        print(f"camtopo process: restored {cp.rows} rows at range {cp.range_id}", flush=True)
    if settings.processor.camera_registry:
        from processors.registry_sync import follow_registry

        proc.registry = follow_registry(network, settings)
        proc.registry.poll(proc.estimator, force=True)  # removals while this worker was down
    print(
        f"camtopo process: {network.n_cameras} cameras, {network.n_windows} windows; "
        f"consuming {settings.kafka.occupancy_topic} from {settings.kafka.bootstrap}",
        flush=True,
    )
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()  # exits the process
