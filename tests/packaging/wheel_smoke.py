"""The package as a user gets it: build the wheel, install it into a fresh venv, run the pipeline.

`make smoke-wheel` (part of `make test`). Every test else imports camtopo from the checkout,
where files outside the packages (the schemas used to live in the top-level schemas/) are found
by accident; an installed wheel failed its first Avro encode. Here nothing comes from the
checkout but the wheel:

1. copy the files git sees (tracked and new, not ignored: what a clean clone plus the work in
   progress holds) to a temporary folder and build the wheel there (`pip wheel --no-deps`), so
   no stale build/ or egg-info of the work tree can fill a gap;
2. check that every file of the package folders is in the wheel;
3. install it into a fresh venv outside the repository, with its dependencies from the index
   (pip's own cache makes that quick after the first time; no --system-site-packages, which
   would hide a missing dependency);
4. from a working folder outside the repository, with that venv's `camtopo`:
   `simulate` -> `estimate` -> `score`, then `stack up` (the infra/ scripts shipped in the
   wheel, on free ports, its own data dir) -> `process` -> `serve` -> `produce --simulate`
   -> GET /health until it reports a checkpoint of counted ranges, the viewer's page and a static
   file; then everything it started is stopped (`stack down`).

Any failure exits 1 with the log of the step that failed. Needs `make setup` (the Kafka jars,
redis-server) like the integration tests. Standard library only: it runs with any Python >= 3.11
(the venv is made from the interpreter that runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("camtopo", "producers", "processors", "topology_store")
SCENARIO, CAMERAS, SEED = "campus", 6, 1


class SmokeFailed(RuntimeError):
    pass


class Smoke:
    def __init__(self, tmp: Path, produce_seconds: int) -> None:
        self.tmp = tmp
        self.venv = tmp / "venv"
        self.work = tmp / "work"  # the working directory of every camtopo command
        self.logs = tmp / "logs"
        self.produce_seconds = produce_seconds
        self.timings: list[tuple[str, float]] = []
        self.wheel = ""
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.env = self._clean_env()
        for d in (self.work, self.logs, tmp / "tmp"):
            d.mkdir(parents=True)

    def _clean_env(self) -> dict[str, str]:
        # Nothing of the checkout's venv or settings; CAMTOPO_CACHE only says where the jars are.
        drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in drop and (not k.startswith("CAMTOPO_") or k == "CAMTOPO_CACHE")
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env["TMPDIR"] = str(self.tmp / "tmp")  # Faust's data dir and the like: ours alone
        return env

    # --- running things -----------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"wheel smoke: {name} ...", flush=True)
        started = time.monotonic()
        yield
        self.timings.append((name, time.monotonic() - started))

    def run(self, name: str, argv: list[Any], timeout: float, cwd: Path | None = None) -> str:
        """Run to the end; its stdout, or SmokeFailed with the tail of its output."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            try:
                done = subprocess.run(
                    [str(a) for a in argv], cwd=cwd or self.work, env=self.env,
                    stdout=subprocess.PIPE, stderr=out, timeout=timeout, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise SmokeFailed(f"{name}: no end within {timeout:.0f} s\n{_tail(log)}") from exc
        stdout = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            raise SmokeFailed(f"{name}: exit {done.returncode}\n{stdout[-3000:]}{_tail(log)}")
        return stdout

    def camtopo(self, name: str, *args: str | Path, timeout: float = 600) -> str:
        # The console script the wheel installed, not `python -m`: the entry point is tested too.
        return self.run(name, [self.venv / "bin" / "camtopo", *args], timeout)

    def start(self, name: str, *args: str | Path) -> None:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            [str(self.venv / "bin" / "camtopo"), *map(str, args)], cwd=self.work, env=self.env,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append((proc, log))

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                raise SmokeFailed(f"{log.stem} exited {proc.returncode}\n{_tail(log)}")

    def wait(self, what: str, probe: Callable[[], Any], timeout: float) -> Any:
        """Poll ``probe`` until it returns something truthy; the servers must stay up."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = probe()
                if result:
                    return result
                last = result
            except (OSError, ValueError) as exc:  # not listening yet, 503, not JSON yet
                last = exc
            time.sleep(0.5)
        logs = "".join(f"\n--- {log.stem}\n{_tail(log)}" for _, log in self.procs)
        raise SmokeFailed(f"{what}: not within {timeout:.0f} s (last: {last!r}){logs}")

    def stop_servers(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()

    # --- the steps ----------------------------------------------------------------------------

    def build(self) -> None:
        src, dist = self.tmp / "src", self.tmp / "dist"
        python = self.venv / "bin" / "python"
        with self.step("copy the sources git sees"):
            _copy_git_files(REPO, src)
        with self.step("fresh venv"):
            self.run("venv", [sys.executable, "-m", "venv", self.venv], 300, cwd=self.tmp)
        with self.step("build the wheel"):
            # An absolute path: `pip wheel src` would fetch the PyPI project named "src".
            argv = [python, "-m", "pip", "wheel", "--no-deps", "-w", dist, src.resolve()]
            self.run("wheel", argv, 600)
        (wheel,) = dist.glob("camtopo-*.whl")
        self.wheel = f"{wheel.name} {wheel.stat().st_size / 1024:.0f} KiB"
        _check_contents(wheel, src)
        with self.step("install the wheel and its dependencies"):
            # Dependencies from the index, as a user gets them. --no-compile: byte-compiling
            # the ~650 MB of dependencies up front took as long as installing them; imports
            # compile what they use.
            self.run("install", [python, "-m", "pip", "install", "--no-compile", wheel], 1800)
        where = self.run("where", [python, "-c", "import camtopo; print(camtopo.__file__)"], 60)
        if not Path(where.strip()).is_relative_to(self.venv):
            raise SmokeFailed(f"camtopo imported from {where.strip()}, not from the fresh venv")

    def offline(self) -> None:
        with self.step("simulate, estimate, score"):
            self.camtopo("simulate", "simulate", "--scenario", SCENARIO, "--cameras", str(CAMERAS),
                         "--duration", "120", "--seed", str(SEED), "--out", "sim")  # fmt: skip
            self.camtopo("estimate", "estimate", "sim/occupancy.jsonl", "-o", "sim/topology.json")
            self.camtopo("score", "score", "sim/topology.json", "sim/truth.json",
                         "--json", "sim/score.json")  # fmt: skip
            json.loads((self.work / "sim" / "score.json").read_text())

    def streaming(self) -> None:
        ports = self.run("ports", [self.venv / "bin" / "python", "-c", PORTS], 60)
        kafka, redis, http, metrics = ports.split()
        self.env.update(
            CAMTOPO_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka}",
            CAMTOPO_REDIS_URL=f"redis://127.0.0.1:{redis}/0",
            CAMTOPO_HTTP_PORT=http,
            CAMTOPO_PROCESSOR_METRICS_PORT=metrics,
        )
        stack = ["--data-dir", self.tmp / "stack"]
        passed = False
        try:
            with self.step("camtopo stack up"):
                self.camtopo("stack-up", "stack", "up", *stack, timeout=300)
            with self.step("process, serve, produce, query"):
                self._pipeline(http, metrics)
            passed = True
        finally:
            # Also after a failed `up`: whichever of Redis and Kafka did start must go.
            self.stop_servers()
            try:
                with self.step("camtopo stack down"):
                    self.camtopo("stack-down", "stack", "down", *stack, timeout=180)
            except SmokeFailed as exc:
                if passed:
                    raise
                print(f"wheel smoke: after the failure, {exc}", file=sys.stderr)

    def _pipeline(self, http: str, metrics: str) -> None:
        network = self.work / "sim" / "network.json"
        self.start("process", "process", "--network", network)
        self.start("serve", "serve", "--network", network)
        base = f"http://127.0.0.1:{http}"
        self.wait("the processor's /metrics", lambda: _get(f"http://127.0.0.1:{metrics}/metrics"),
                  120)  # fmt: skip
        self.wait("the query service's /healthz", lambda: _get(f"{base}/healthz"), 60)
        out = self.camtopo("produce", "produce", "--simulate", "--scenario", SCENARIO,
                           "--cameras", str(CAMERAS), "--seed", str(SEED),
                           "--duration", str(self.produce_seconds), "--no-progress",
                           timeout=self.produce_seconds + 120)  # fmt: skip
        summary = [line for line in out.splitlines() if "delivery failures" in line]
        print(f"wheel smoke: produce: {summary[0] if summary else out.strip()[-500:]}")

        def counted() -> dict[str, Any] | None:
            doc = json.loads(_get(f"{base}/health"))
            ok = doc["status"] == "ok" and doc["checkpoint"]["range_id"] is not None
            return doc if ok and doc["cameras"] == CAMERAS else None

        # A range is counted Tr + Td = 7 s after its end and then checkpointed to Redis.
        doc = self.wait("a checkpoint of counted ranges in /health", counted, 90)
        print(f"wheel smoke: /health {json.dumps(doc)}")
        if b"<html" not in _get(f"{base}/").lower() or not _get(f"{base}/static/viewer.js"):
            raise SmokeFailed("the live viewer's page or its static files are not served")


PORTS = """
from camtopo.operations.localstack import CONTROLLER_PORT_OFFSET, free_port, free_ports
# kafka.sh puts the controller CONTROLLER_PORT_OFFSET above the broker: both must be free.
kafka = free_ports(CONTROLLER_PORT_OFFSET + 1)
ports = {kafka, kafka + CONTROLLER_PORT_OFFSET}
others = []
while len(others) < 3:
    port = free_port()
    if port not in ports:
        ports.add(port)
        others.append(port)
print(kafka, *others)
"""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bytes(resp.read())


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _copy_git_files(repo: Path, dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        source, target = repo / rel, dest / rel
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the work tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # camtopo/operations/infra -> ../../infra: copied as the link it is
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


def _check_contents(wheel: Path, src: Path) -> None:
    """Every file of the package folders (modules and data) and infra/'s are in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [
        path.relative_to(src).as_posix()
        for package in PACKAGES
        for path in (src / package).rglob("*")  # does not enter camtopo/operations/infra, a symlink
        if path.is_file() and not path.is_symlink()
    ]
    infra = (
        "kafka.sh",
        "daemon.sh",  # sourced by redis.sh and registry.sh
        "redis.sh",
        "registry.sh",
        "setup.sh",
        "kafka/pom.xml",
        # the broker's logging: log4j2 for Kafka 4 (the default), log4j 1.x for 3.9
        "kafka/log4j2.properties",
        "kafka/tools-log4j2.properties",
        "kafka/log4j.properties",
        "kafka/tools-log4j.properties",
        "prometheus/alerts.yml",
    )
    wanted += [f"camtopo/operations/infra/{name}" for name in infra]
    missing = sorted(set(wanted) - names)
    if missing:
        raise SmokeFailed(f"{wheel.name} lacks {len(missing)} file(s): {missing[:20]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--produce-seconds", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="camtopo-wheel-smoke-")).resolve()
    if tmp.is_relative_to(REPO):
        raise SystemExit(f"{tmp} is inside the repository; set TMPDIR elsewhere")
    smoke = Smoke(tmp, args.produce_seconds)
    try:
        smoke.build()
        smoke.offline()
        smoke.streaming()
    except SmokeFailed as exc:
        print(f"wheel smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        smoke.stop_servers()
        if args.keep:
            print(f"wheel smoke: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for name, seconds in smoke.timings:
        print(f"wheel smoke: {seconds:7.1f} s  {name}")
    print(f"wheel smoke: ok in {time.monotonic() - started:.0f} s; {smoke.wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
