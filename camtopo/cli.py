"""The ``camtopo`` command line: one sub-command per module that registers itself.

Each module listed in ``COMMANDS`` exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to the function that runs it. Modules keep heavy imports inside that function so
that ``camtopo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from camtopo.errors import CamtopoError

COMMANDS = (
    "camtopo.simulation.command",  # simulate
    "camtopo.estimate",  # estimate
    "camtopo.evaluation.score",  # score
    "camtopo.evaluation.render",  # render
    "camtopo.evaluation.baseline",  # baseline (peer estimator for the accuracy benchmark)
    "camtopo.operations.localstack",  # stack (start/stop local Kafka and Redis)
    "producers.command",  # produce
    "producers.detect",  # detect (recorded footage -> occupancy files, no broker)
    "processors.command",  # process
    "topology_store.command",  # serve
    "topology_store.cameras_command",  # cameras (the camera registry)
    "camtopo.operations.demo",  # demo
    "camtopo.operations.lag",  # lag-exporter (Kafka consumer-group lag for Prometheus)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camtopo", description="Activity topology of camera networks by exclusion."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a command not yet built
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, CamtopoError) as exc:
        # Bad input and missing files end with one clear line, not a traceback.
        print(f"camtopo {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 2


def describe(exc: BaseException) -> str:
    """One line for an error; a settings error names each variable and what is wrong."""
    import pydantic  # here, not at the top: ``camtopo --help`` stays fast

    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or exc.title}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
