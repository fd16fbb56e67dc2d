"""Long fuzzing of every decoder and parser that takes outside input (tests/fuzzing.py's targets).

The suite runs each target for a few seconds (tests/unit/test_fuzz_*.py); this runs the same
targets with many more inputs and writes ``benchmarks/results/fuzz.json``: inputs tried per
target, crashes (inputs that raised anything but the documented error) with the smallest
failing input hypothesis found, and time. The HTTP target starts a real redis-server and the
query app on loopback (``--http-examples 0`` skips it).

    python -m benchmarks.fuzz --examples 20000 --http-examples 3000
    python -m benchmarks.fuzz --only rle_decode --examples 1000 --out /tmp/fuzz.json
    python -m benchmarks.fuzz --atheris rle_decode --seconds 60   # coverage-guided, bytes only

Exit status 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import Phase, given, settings

if TYPE_CHECKING:
    from tests import fuzzing

RESULTS = Path(__file__).parent / "results" / "fuzz.json"
# Byte-level decoders atheris can drive directly (its input is one byte string).
ATHERIS = (
    "avro_decode", "processor_record", "range_block", "rle_decode", "jsonl_trace",
    "network_json", "avro_trace",
)  # fmt: skip
# The modules atheris instruments for coverage: the decoders themselves. Not instrument_all()
# (numpy, numba, hypothesis... took minutes before the first input) and no numba module (its
# compiler cannot read instrumented bytecode: blobs' compiled RLE decoder failed to compile).
PROJECT = [
    "camtopo.formats.avro", "camtopo.formats.traces", "camtopo.core.rle", "camtopo.core.grid",
    "camtopo.evaluation.score", "camtopo.estimate", "processors.validate", "processors.blocks",
    "processors.dead_letters",
]  # fmt: skip


def run_target(target: fuzzing.Target, examples: int, seed: int) -> dict[str, Any]:
    """Run one target for ``examples`` generated inputs; counts every input tried (shrinking's
    too, after a crash)."""
    from tests import fuzzing

    tried = 0
    every = max(examples // 10, 1)
    started = time.perf_counter()

    def counted(value: Any) -> None:
        nonlocal tried
        tried += 1
        if tried % every == 0:
            rate = tried / (time.perf_counter() - started)
            print(f"  {target.name}: {tried}/{examples} inputs ({rate:.0f}/s)", flush=True)
        target.check(value)

    test = settings(
        fuzzing.FUZZ,
        max_examples=examples,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        report_multiple_bugs=True,
    )(given(target.strategy)(counted))
    test = _seeded(test, seed)
    crashes: list[dict[str, str]] = []
    try:
        test()
    except BaseException as exc:  # every failure is a crash to report
        if isinstance(exc, KeyboardInterrupt):
            raise
        found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
        for error in found:
            notes = "\n".join(getattr(error, "__notes__", []))
            crashes.append(
                {
                    "error": f"{type(error).__name__}: {error}"[:500],
                    "input": notes[:2000],
                    "where": "".join(traceback.format_tb(error.__traceback__)[-2:])[:1500],
                }
            )
    seconds = time.perf_counter() - started
    return {
        "inputs": tried,
        "crashes": len(crashes),
        "seconds": round(seconds, 1),
        "failures": crashes,
    }


def _seeded(test: Callable[[], None], seed: int) -> Callable[[], None]:
    from hypothesis import seed as hypothesis_seed

    return hypothesis_seed(seed)(test)  # type: ignore[no-any-return]


@contextmanager
def http_target() -> Iterator[fuzzing.Target]:
    """A real redis-server of its own, and the query app serving it (tests/fuzzing.py)."""
    from camtopo.operations.localstack import RedisServer
    from tests import fuzzing

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(data_dir=Path(tmp))
        server.start()
        try:
            with fuzzing.serving(server.url) as target:
                yield target
        finally:
            server.stop()


def run_atheris(name: str, seconds: float) -> None:
    import atheris

    with atheris.instrument_imports(include=PROJECT):
        from tests import fuzzing
    checks: dict[str, Callable[[bytes], None]] = {
        "avro_decode": lambda data: fuzzing.check_avro_decode((fuzzing.avro.OCCUPANCY, data)),
        "processor_record": lambda data: fuzzing.check_processor_record((data, fuzzing.WALL_MS)),
        "range_block": fuzzing.check_range_block,
        "rle_decode": fuzzing.check_rle,
        "jsonl_trace": fuzzing.check_jsonl_trace,
        "network_json": fuzzing.check_network,
        "avro_trace": fuzzing.check_avro_trace,
    }
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}"], checks[name])
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000, help="inputs per pure target")
    parser.add_argument("--http-examples", type=int, default=2_000, help="0 skips HTTP")
    parser.add_argument("--only", nargs="*", help="target names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--atheris", choices=sorted(ATHERIS), help="coverage-guided, one target")
    parser.add_argument("--seconds", type=float, default=60, help="atheris run time")
    args = parser.parse_args()
    if args.atheris:
        run_atheris(args.atheris, args.seconds)
        return 0
    from tests import fuzzing  # after atheris' chance to instrument it

    names = set(args.only or [*fuzzing.BY_NAME, "http"])
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for target in fuzzing.TARGETS:
        if target.name in names:
            print(f"{target.name}: {args.examples} inputs", flush=True)
            results[target.name] = run_target(target, args.examples, args.seed)
            print(f"  -> {results[target.name]['crashes']} crashes", flush=True)
    if "http" in names and args.http_examples:
        with http_target() as target:
            print(f"http: {args.http_examples} requests", flush=True)
            results["http"] = run_target(target, args.http_examples, args.seed)
    doc = {
        "what": "inputs tried per fuzz target (tests/fuzzing.py) and crashes: inputs that "
        "raised anything but the documented error",
        "python": platform.python_version(),
        "seed": args.seed,
        "examples_per_target": args.examples,
        "http_examples": args.http_examples,
        "seconds": round(time.perf_counter() - started, 1),
        "crashes": sum(r["crashes"] for r in results.values()),
        "targets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for name, r in results.items():
        print(f"{name:18} {r['inputs']:>8} inputs  {r['crashes']} crashes  {r['seconds']:>7.1f} s")
    print(f"wrote {args.out}")
    return 1 if doc["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
