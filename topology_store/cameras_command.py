"""``camtopo cameras``: the camera registry from the command line (docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from camtopo.core.grid import Grid, Network
from camtopo.core.registry import CameraEntry, Registry, RegistryError, reserved_of

_GRID = re.compile(r"([0-9]{1,4})x([0-9]{1,4})(?:@([0-9]{1,5})x([0-9]{1,5}))?")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cameras",
        help="list, add, remove, rename and describe cameras in the registry (Redis)",
        description=(
            "The camera registry in CAMTOPO_REDIS_URL. Processors and the query service pick "
            "changes up without a restart: a removed camera's frames become dead letters and "
            "its edges disappear; a new name shows in the query service."
        ),
    )
    p.add_argument("--prefix", default="camtopo", help="Redis key prefix (as the processors')")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="one line per camera")
    imp = sub.add_parser("import", help="seed the registry from network.json (idempotent)")
    imp.add_argument("network", help="network.json; its optional 'reserved' list -> reserved")
    add = sub.add_parser("add", help="install a camera into its slot in network.json")
    add.add_argument("camera", help="the camera id of network.json")
    add.add_argument("--name", help="display name (default: the id)")
    add.add_argument("--location", default="", help="free text")
    add.add_argument("--lat", type=float)
    add.add_argument("--lon", type=float)
    add.add_argument("--fps", type=int, help="default: its slot's in network.json")
    add.add_argument("--grid", help="COLSxROWS[@WIDTHxHEIGHT]; default: its slot's")
    add.add_argument(
        "--network", help="network.json to check the slot in (default: the one processors saved)"
    )
    rm = sub.add_parser("remove", help="stop counting a camera; its edges age out")
    rm.add_argument("camera")
    rn = sub.add_parser("rename", help="change a camera's display name")
    rn.add_argument("camera")
    rn.add_argument("name")
    de = sub.add_parser("describe", help="change a camera's location")
    de.add_argument("camera")
    de.add_argument("--location")
    de.add_argument("--lat", type=float)
    de.add_argument("--lon", type=float)
    p.set_defaults(func=run)


def parse_grid(raw: str) -> Grid:
    match = _GRID.fullmatch(raw)
    if match is None:
        raise RegistryError(f"'grid' must be COLSxROWS or COLSxROWS@WIDTHxHEIGHT, got {raw!r}")
    cols, rows = int(match[1]), int(match[2])
    if match[3] is None:
        return Grid(cols, rows)
    return Grid(cols, rows, int(match[3]), int(match[4]))


def line(entry: CameraEntry) -> str:
    g = entry.grid
    where = entry.location + (f" ({entry.lat}, {entry.lon})" if entry.lat is not None else "")
    return (
        f"{entry.id}\t{entry.state}\t{entry.name}\t{entry.fps} fps\t"
        f"{g.cols}x{g.rows}@{g.width}x{g.height}\t{where}"
    )


def new_entry(args: argparse.Namespace, network: Network | None) -> CameraEntry:
    """The entry ``add`` asks for; fps and grid default to the camera's slot."""
    fps: int | None = args.fps
    grid = parse_grid(args.grid) if args.grid else None
    if network is not None and args.camera in network.cameras:
        slot = network.camera_index(args.camera)
        fps = network.rate(slot) if fps is None else fps
        grid = network.grids[slot] if grid is None else grid
    if fps is None or grid is None:
        raise RegistryError(
            f"camera {args.camera!r}: no slot in a known network.json to take 'fps' and 'grid' "
            "from: give --network, or --fps and --grid"
        )
    return CameraEntry(
        args.camera,
        args.name or args.camera,
        fps,
        grid,
        location=args.location,
        lat=args.lat,
        lon=args.lon,
    )


def run(args: argparse.Namespace) -> int:
    from camtopo.settings import get_settings
    from topology_store.backend import store_client
    from topology_store.camera_registry import CameraRegistryStore
    from topology_store.keys import Keys

    settings = get_settings()
    keys = Keys(args.prefix, settings.redis.shards)
    client = store_client(settings)
    store = CameraRegistryStore(client, keys)
    if args.action == "list":
        registry = store.load()
        for camera in sorted(registry.cameras):
            print(line(registry.cameras[camera]))
        return 0
    if args.action == "import":
        path = Path(args.network)
        declared = Network.load(path)
        reserved = reserved_of(json.loads(path.read_bytes()))
        after = store.change(lambda r: r.import_network(declared, reserved))
        print(f"{len(after.cameras)} cameras registered, version {after.version}")
        return 0
    if args.action == "add":
        if args.network:
            network: Network | None = Network.load(args.network)
        else:
            raw = client.get(keys.network)
            network = Network.from_json(json.loads(raw)) if raw is not None else None
        entry = new_entry(args, network)

        def add(r: Registry) -> Registry:
            return r.add(entry, network)

        done = store.change(add)
    elif args.action == "remove":
        now = int(time.time() * 1000)
        done = store.change(lambda r: r.remove(args.camera, now))
    elif args.action == "rename":
        done = store.change(lambda r: r.rename(args.camera, args.name))
    else:
        done = store.change(lambda r: r.describe(args.camera, args.location, args.lat, args.lon))
    print(line(done.cameras[args.camera]))
    return 0
