"""Multiprocess metrics: a worker that stopped no longer counts in the live gauges, while its
counters still add up."""

import os
import subprocess
import sys

CODE = """
import os
from robutler_server.metrics import Metrics

metrics = Metrics()
metrics.in_flight.labels("a").inc(3)
metrics.requests.labels("a", "200", "false").inc()
metrics.process_ended()
text = Metrics().exposition().decode()
print([line for line in text.splitlines() if line.startswith(("robutler_requests_in_flight{", "robutler_requests_total{"))])
"""


def test_a_stopped_worker_leaves_the_live_gauges_but_not_the_counters(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == """['robutler_requests_total{agent="a",status="200",stream="false"} 1.0']"""
