"""A short benchmark in CI's reach: fails loudly when agent construction or the import of
robutler_core / robutler_server becomes about 2x slower than the figures of
benchmarks/README.md.

Each cost is measured as a ratio to a baseline taken in the same run on the same machine (the
speed of a machine, or of a loaded one, cancels out):

- ``Agent("bench", ..., model="test")`` against ``inspect.signature(Agent.__init__)`` (pure
  Python in the standard library), best of 5 timeit runs of each;
- ``import robutler_core`` against the ``import asyncio`` inside it, and ``import
  robutler_server`` against the ``import fastapi`` inside it, from ``python -X importtime``
  (cumulative microseconds; wall clock would add the interpreter's start).

A measurement is retried (up to 3 times) only while it is over its limit, so a pass costs one
round (about a second) and a noise spike does not fail the suite. ``benchmarks/bench_startup.py``
gives the absolute figures.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import timeit

import pytest

# Ratios measured when these limits were set (2-core machine, loaded): construction 0.46-0.48
# (before per-class caching: 47-60); robutler_core/asyncio 1.36-1.83, median 1.66 (before
# lazy imports: 3.94-5.7); robutler_server/fastapi 1.5-2.4 (fastapi is most of it).
CONSTRUCT_RATIO = 0.5
CORE_IMPORT_RATIO = 1.7
SERVER_IMPORT_RATIO = 2.0
REGRESSION = 2.0
ATTEMPTS = 3


def within_limit(measure, limit: float) -> list[float]:
    """Up to ATTEMPTS measurements, stopping at the first within ``limit``; returns them all."""
    seen = []
    for _ in range(ATTEMPTS):
        seen.append(measure())
        if seen[-1] <= limit:
            break
    return seen


def construct_ratio() -> float:
    from robutler_core import Agent

    def build():
        return Agent("bench", "You are a benchmark.", model="test")

    def reference():
        return inspect.signature(Agent.__init__)

    build(), reference()
    built = min(timeit.repeat(build, number=100, repeat=5))
    referenced = min(timeit.repeat(reference, number=100, repeat=5))
    return built / referenced


def import_ratio(module: str, inner: str) -> float:
    """Cumulative import time of ``module`` over that of ``inner`` (which it imports)."""
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    ).stderr
    cumulative = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in (module, inner):
            cumulative.setdefault(match.group(2), int(match.group(1)))
    assert set(cumulative) == {module, inner}, f"{module} no longer imports {inner}: pick another baseline"
    return cumulative[module] / cumulative[inner]


@pytest.mark.parametrize(
    ("name", "measure", "baseline"),
    [
        ("agent construction / inspect.signature", construct_ratio, CONSTRUCT_RATIO),
        ("import robutler_core / import asyncio", lambda: import_ratio("robutler_core", "asyncio"), CORE_IMPORT_RATIO),
        ("import robutler_server / import fastapi", lambda: import_ratio("robutler_server", "fastapi"), SERVER_IMPORT_RATIO),
    ],
)
def test_startup_costs_have_not_doubled(name, measure, baseline):
    limit = baseline * REGRESSION
    seen = within_limit(measure, limit)
    assert min(seen) <= limit, (
        f"{name}: ratio {', '.join(f'{r:.2f}' for r in seen)} in {len(seen)} tries, over the limit "
        f"{limit:.2f} ({REGRESSION:g}x the {baseline:g} measured when it was set): a start-up "
        "regression; run benchmarks/bench_startup.py and python -X importtime to find it"
    )
