"""docs/deployment.md's systemd unit, Dockerfile and Kubernetes Deployment cannot be built or run
here (no container registry): their commands are parsed by the ``robutler serve`` command
itself, and their ports, probe paths and stop timeouts checked against it and the app."""

import configparser
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from robutler_core import Agent
from robutler_server import create_app
from robutler_server.cli import serve

DOC = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()


def block(language):
    (found,) = re.findall(rf"^```{language}\n(.*?)^```$", DOC, re.S | re.M)
    return found


def serve_options(argv):
    """The ``serve`` command's parameters for ``argv`` (``robutler serve ...``), as click parses
    them; a bad option fails the test with click's message."""
    assert argv[0].endswith("robutler") and argv[1] == "serve", argv
    context = serve.make_context("serve", list(argv[2:]))
    return context.params


def routes():
    return {route.path for route in create_app([Agent("a", model="test")]).routes}


def test_the_systemd_unit():
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str
    unit.read_string(block("ini"))
    options = serve_options(shlex.split(unit["Service"]["ExecStart"]))
    assert options["agents_file"].endswith("agents.yaml") and options["port"] == 8000
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert float(unit["Service"]["TimeoutStopSec"]) > options["graceful_timeout"]


def test_the_dockerfile():
    lines = [line for line in block("dockerfile").splitlines() if line.strip()]
    instructions = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    options = serve_options(json.loads(instructions["CMD"]))
    assert options["host"] == "0.0.0.0"  # reachable from outside the container
    assert int(instructions["EXPOSE"]) == options["port"]
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    probe = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", instructions["HEALTHCHECK"])
    assert int(probe.group(1)) == options["port"] and probe.group(2) in routes()


def test_the_kubernetes_deployment():
    (deployment,) = yaml.safe_load_all(block("yaml"))
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    options = serve_options(container["command"] + container["args"])
    assert options["host"] == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [options["port"]]
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": options["port"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": options["port"]}
    assert {"/live", "/ready", "/metrics"} <= routes()
    assert pod["terminationGracePeriodSeconds"] > options["graceful_timeout"]
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]


def test_a_bad_option_in_a_command_would_be_caught():
    with pytest.raises(Exception, match="--wokers"):
        serve_options(["robutler", "serve", "agents.yaml", "--wokers", "2"])
