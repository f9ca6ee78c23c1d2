"""Start-up costs: agent construction (against openai-agents and pydantic-ai), import time of
``robutler_core`` and ``robutler_server``, and how long ``robutler serve`` takes to answer.

Measured in one run, side by side:

- ``construct``: microseconds to build one agent on an offline test model, best of
  ``--repeat`` timeit runs: ``robutler_core.Agent("bench", ..., model="test")``,
  ``agents.Agent(name="bench", ...)`` (openai-agents) and
  ``pydantic_ai.Agent(TestModel(), ...)`` (pydantic-ai), each with instructions. The peers are
  skipped (reported as ``null``) when not installed.
- ``import``: milliseconds a fresh ``python -c "import X"`` takes over a bare
  ``python -c "pass"`` (wall clock, the fastest of ``--runs`` starts of each).
- ``serve_ready``: milliseconds from starting ``robutler serve agents.yaml`` (three agents on
  the ``test`` model) to its first ``200`` on ``GET /health``, fastest of ``--serve-runs``: with
  every installed plugin distribution loaded (what an operator gets), and with none
  (``ROBUTLER_LOAD_PLUGINS=""``: robutler-core and robutler-server alone). The difference is
  what the plugins' entry-point modules import at start-up. Each is measured twice: with
  Python's bytecode cache as the environment has it (``PYTHONDONTWRITEBYTECODE=1`` and an
  editable checkout: every start compiles robutler's modules from source), and with it on
  (``*_bytecode_cached``: kept in a temporary ``PYTHONPYCACHEPREFIX``, filled by one start not
  counted), as a server installed from wheels starts. With ``--against TREE`` (another
  checkout, e.g. ``git archive COMMIT | tar -x -C TREE``), the starts alternate between TREE's
  packages (its ``packages/*/src`` first on ``PYTHONPATH``) and this checkout's, ``--serve-runs``
  rounds, and each figure is the fastest and the median of its starts.

    python benchmarks/bench_startup.py [--runs 5] [--serve-runs 3] [--repeat 5] [--only import,serve]
                                       [--against TREE]

Prints one JSON object. Targets (issue 13): construction under 100 us, ``import robutler_core``
under 100 ms, ``import robutler_server`` under 500 ms, ``robutler serve`` ready in under 1 s.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

AGENTS_FILE = """\
agents:
  - name: alpha
    instructions: You are the first benchmark agent.
    model: test
  - name: beta
    instructions: You are the second benchmark agent.
    model: test
  - name: gamma
    instructions: You are the third benchmark agent.
    model: test
"""

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def best_per_call(build: Callable[[], Any], repeat: int) -> float:
    """Seconds per call of ``build``: the best of ``repeat`` timeit runs of about 0.2 s each."""
    timer = timeit.Timer(build)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def construction_builders() -> dict[str, Callable[[], Any] | None]:
    """One zero-argument builder per framework (``None`` when it is not installed)."""
    from robutler_core import Agent

    builders: dict[str, Callable[[], Any] | None] = {
        "robutler": lambda: Agent("bench", "You are a benchmark.", model="test"),
    }
    try:
        import agents  # openai-agents

        builders["openai_agents"] = lambda: agents.Agent(name="bench", instructions="You are a benchmark.")
    except ImportError:
        builders["openai_agents"] = None
    try:
        import pydantic_ai
        from pydantic_ai.models.test import TestModel

        builders["pydantic_ai"] = lambda: pydantic_ai.Agent(TestModel(), instructions="You are a benchmark.")
    except ImportError:
        builders["pydantic_ai"] = None
    return builders


def construction(repeat: int) -> dict[str, float | None]:
    """Microseconds per agent construction, by framework."""
    result: dict[str, float | None] = {}
    for name, build in construction_builders().items():
        if build is None:
            result[name] = None
            continue
        build()  # warm: first-use imports and caches are start-up, not construction
        result[name] = round(best_per_call(build, repeat) * 1e6, 1)
    return result


def fastest_start(code: str, runs: int) -> float:
    """Seconds of the fastest of ``runs`` fresh ``python -c code`` processes (wall clock)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
        best = min(best, time.perf_counter() - started)
    return best


def import_times(runs: int) -> dict[str, float]:
    """Milliseconds each import adds to a bare interpreter start (fastest of ``runs``)."""
    bare = fastest_start("pass", runs)
    result = {"bare_python_ms": round(bare * 1000, 1)}
    for module in ("robutler_core", "robutler_server"):
        result[module] = round((fastest_start(f"import {module}", runs) - bare) * 1000, 1)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_ready(runs: int, env: dict[str, str]) -> float | None:
    """Milliseconds from spawning ``robutler serve`` (three agents) to its first 200 on
    ``/health``: the fastest of ``runs``; ``None`` when the ``robutler`` command is missing."""
    robutler = shutil.which("robutler", path=os.path.dirname(sys.executable)) or shutil.which("robutler")
    if robutler is None:
        return None
    best = float("inf")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "agents.yaml")
        with open(path, "w") as f:
            f.write(AGENTS_FILE)
        for _ in range(runs):
            port = free_port()
            started = time.perf_counter()
            process = subprocess.Popen(
                [robutler, "serve", path, "--port", str(port), "--log-level", "warning"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            try:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"robutler serve exited: {process.stderr.read().decode()}")
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                            if response.status == 200:
                                break
                    except (urllib.error.URLError, ConnectionError):
                        pass
                    if time.perf_counter() - started > 30:
                        raise RuntimeError("robutler serve did not answer /health within 30 s")
                    time.sleep(0.005)
                best = min(best, time.perf_counter() - started)
            finally:
                process.terminate()
                process.wait(timeout=30)
                process.stderr.close()
    return round(best * 1000, 1)


def with_bytecode_cache(env: dict[str, str], directory: str) -> dict[str, str]:
    """``env`` with Python's bytecode cache on, kept under ``directory`` (so the checkout and
    site-packages are not written to)."""
    cached = {**env, "PYTHONPYCACHEPREFIX": directory}
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    return cached


def serve_ready_figures(runs: int) -> dict[str, float | None]:
    """:func:`serve_ready` with every installed plugin and with none, each without and with a
    bytecode cache (see the module docstring)."""
    none = {**ENV, "ROBUTLER_LOAD_PLUGINS": ""}
    figures = {"all_installed_plugins": serve_ready(runs, ENV), "no_plugins": serve_ready(runs, none)}
    with tempfile.TemporaryDirectory() as directory:
        serve_ready(1, with_bytecode_cache(ENV, directory))  # fills the cache
        figures["all_installed_plugins_bytecode_cached"] = serve_ready(runs, with_bytecode_cache(ENV, directory))
        figures["no_plugins_bytecode_cached"] = serve_ready(runs, with_bytecode_cache(none, directory))
    return figures


def with_tree(env: dict[str, str], tree: str) -> dict[str, str]:
    """``env`` importing robutler's packages from the checkout at ``tree`` (its ``packages/*/src``
    and ``examples/*/src`` first on ``PYTHONPATH``). Raises SystemExit when it has none."""
    sources = sorted(glob.glob(os.path.join(tree, "packages", "*", "src")))
    if not sources:
        raise SystemExit(f"--against {tree}: no packages/*/src there")
    sources += sorted(glob.glob(os.path.join(tree, "examples", "*", "src")))
    return {**env, "PYTHONPATH": os.pathsep.join([*sources, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def serve_ready_side_by_side(rounds: int, tree: str) -> dict[str, dict[str, dict[str, float]]]:
    """The figures of :func:`serve_ready_figures` for this checkout and for ``tree``, one start
    of each in turn for ``rounds`` rounds: ``{"this"|"against": {figure: {"fastest", "median"}}}``
    (milliseconds)."""
    none = {"ROBUTLER_LOAD_PLUGINS": ""}
    with tempfile.TemporaryDirectory() as directory:
        configs: dict[tuple[str, str], dict[str, str]] = {}
        for side, env in (("this", ENV), ("against", with_tree(ENV, tree))):
            configs[side, "all_installed_plugins"] = env
            configs[side, "no_plugins"] = {**env, **none}
            configs[side, "all_installed_plugins_bytecode_cached"] = with_bytecode_cache(env, directory)
            configs[side, "no_plugins_bytecode_cached"] = with_bytecode_cache({**env, **none}, directory)
        for (side, figure), env in configs.items():
            if figure.endswith("_cached"):
                serve_ready(1, env)  # fills the cache
        starts: dict[tuple[str, str], list[float]] = {key: [] for key in configs}
        for _ in range(rounds):
            for key, env in configs.items():
                starts[key].append(serve_ready(1, env))  # type: ignore[arg-type]
    report: dict[str, dict[str, dict[str, float]]] = {"this": {}, "against": {}}
    for (side, figure), values in starts.items():
        report[side][figure] = {"fastest": min(values), "median": round(statistics.median(values), 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interpreter starts per import timing")
    parser.add_argument("--serve-runs", type=int, default=3, help="robutler serve starts")
    parser.add_argument("--repeat", type=int, default=5, help="timeit repeats per construction")
    parser.add_argument("--against", metavar="TREE", help="another checkout: serve starts alternate with it")
    parser.add_argument(
        "--only", default="construct,import,serve", help="comma list of: construct, import, serve"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - {"construct", "import", "serve"}:
        parser.error(f"--only takes construct, import, serve; got {args.only!r}")

    report: dict[str, Any] = {}
    if "construct" in parts:
        built = construction(args.repeat)
        report["construct_us"] = built
        if built.get("openai_agents"):
            report["construct_ratio_robutler_to_openai_agents"] = round(built["robutler"] / built["openai_agents"], 2)
        if built.get("pydantic_ai"):
            report["construct_ratio_robutler_to_pydantic_ai"] = round(built["robutler"] / built["pydantic_ai"], 2)
    if "import" in parts:
        report["import_ms_over_bare_python"] = import_times(args.runs)
    if "serve" in parts:
        if args.against:
            report["serve_ready_ms_three_agents"] = serve_ready_side_by_side(args.serve_runs, args.against)
            report["against"] = os.path.abspath(args.against)
        else:
            report["serve_ready_ms_three_agents"] = serve_ready_figures(args.serve_runs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
