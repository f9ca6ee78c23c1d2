"""Prometheus metrics of the server (``GET /metrics``, the Prometheus text format 0.0.4), with
``prometheus-client``.

With ``PROMETHEUS_MULTIPROC_DIR`` set in the environment before ``prometheus_client`` is imported
(``robutler serve --workers N`` sets it to a fresh directory), every worker writes its values
there and ``/metrics``, whichever worker answers, adds them up (prometheus-client's multiprocess
mode).

Labels are bounded: ``agent`` is a served agent's name (requests for an unknown agent are not
counted), ``model`` the agent's configured ``provider/model``, ``tool`` one of the agent's
tools (a call of a name the agent does not have counts as ``tool="unknown"``), ``status`` the
HTTP status, ``stream`` ``"true"``/``"false"``, ``outcome`` ``"ok"``/``"error"``, ``type`` of
tokens ``input``/``output``/``cached``. No user ids, no free text.

| metric | type | labels |
| --- | --- | --- |
| ``robutler_requests_total`` | counter | agent, status, stream |
| ``robutler_request_duration_seconds`` | histogram | agent, stream |
| ``robutler_time_to_first_token_seconds`` | histogram | agent (streams: request start to the first chunk) |
| ``robutler_requests_in_flight`` | gauge | agent |
| ``robutler_client_disconnects_total`` | counter | agent |
| ``robutler_model_calls_total`` | counter | agent, model |
| ``robutler_model_tokens_total`` | counter | agent, model, type |
| ``robutler_model_cost_usd_total`` | counter | agent, model (calls of unknown price add 0) |
| ``robutler_tool_calls_total`` | counter | agent, tool, outcome |
| ``robutler_tool_duration_seconds`` | histogram | agent, tool |
"""

from __future__ import annotations

import os
from typing import Any


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Seconds: from a cached answer to a long agent run with tools."""


def multiprocess_mode() -> bool:
    """Whether values go to ``PROMETHEUS_MULTIPROC_DIR`` (set and non-empty)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The server's metrics in their own registry (several apps in one process do not clash)."""

    def __init__(self) -> None:
        # prometheus-client (~30 ms of import) when an app is made, not when the server is imported
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

        self.content_type = CONTENT_TYPE_LATEST
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("robutler_requests", "HTTP requests served for an agent.",
                                ["agent", "status", "stream"], registry=r)
        self.request_duration = Histogram("robutler_request_duration_seconds",
                                          "Time from a request's start to the end of its answer.",
                                          ["agent", "stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("robutler_time_to_first_token_seconds",
                                     "Streaming requests: time from the request's start to the first chunk sent.",
                                     ["agent"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("robutler_requests_in_flight", "Requests for an agent being answered.",
                               ["agent"], registry=r, multiprocess_mode="livesum")
        self.disconnects = Counter("robutler_client_disconnects", "Requests whose client went away first.",
                                   ["agent"], registry=r)
        self.model_calls = Counter("robutler_model_calls", "Model calls (one per model turn answered).",
                                   ["agent", "model"], registry=r)
        self.tokens = Counter("robutler_model_tokens", "Tokens of model calls: input (cached included), "
                              "output, and cached (the input read from a prompt cache).",
                              ["agent", "model", "type"], registry=r)
        self.cost = Counter("robutler_model_cost_usd", "Cost of model calls in US dollars (unknown prices add 0).",
                            ["agent", "model"], registry=r)
        self.tool_calls = Counter("robutler_tool_calls", "Server-side tool calls by outcome (ok, error).",
                                  ["agent", "tool", "outcome"], registry=r)
        self.tool_duration = Histogram("robutler_tool_duration_seconds", "Server-side tool call duration.",
                                       ["agent", "tool"], buckets=LATENCY_BUCKETS, registry=r)

        self._agents: dict[str, AgentMetrics] = {}
        self._models: dict[tuple[str, str], tuple[Any, ...]] = {}

    def agent(self, name: str) -> AgentMetrics:
        """The request metrics of agent ``name``, their labelled children made once (a
        ``labels()`` call takes a lock and builds a key: several per request add up)."""
        found = self._agents.get(name)
        if found is None:
            found = self._agents[name] = AgentMetrics(self, name)
        return found

    def model_call(self, agent: str, record: dict[str, Any]) -> None:
        """Count one model call from a ``kind="llm"`` usage record's ``metadata``
        (:meth:`robutler_core.Context.track_llm_usage`)."""
        model = str(record.get("model"))
        children = self._models.get((agent, model))
        if children is None:
            children = self._models[(agent, model)] = (
                self.model_calls.labels(agent, model), self.tokens.labels(agent, model, "input"),
                self.tokens.labels(agent, model, "output"), self.tokens.labels(agent, model, "cached"),
                self.cost.labels(agent, model),
            )
        calls, tokens_in, tokens_out, tokens_cached, cost = children
        calls.inc()
        for child, amount in ((tokens_in, int(record.get("prompt_tokens") or 0)),
                              (tokens_out, int(record.get("completion_tokens") or 0)),
                              (tokens_cached, int(record.get("cached_tokens") or 0)),
                              (cost, float(record.get("cost_usd") or 0))):
            if amount:  # adding 0 changes nothing (each add takes the value's lock)
                child.inc(amount)

    def process_ended(self) -> None:
        """In multiprocess mode, drop this process's live gauges (``robutler_requests_in_flight``)
        from the shared directory, so that a worker that stopped no longer counts; the app's
        lifespan calls it at shutdown. Counters and histograms stay (they keep adding up)."""
        if multiprocess_mode():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or every worker's in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class AgentMetrics:
    """One agent's labelled children of the request metrics (:meth:`Metrics.agent`)."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.metrics = metrics
        self.name = name
        self.in_flight = metrics.in_flight.labels(name)
        self.first_token = metrics.first_token.labels(name)
        self.disconnects = metrics.disconnects.labels(name)
        self.duration = {stream: metrics.request_duration.labels(name, stream) for stream in ("true", "false")}
        self._requests: dict[tuple[int, bool], Any] = {}

    def ended(self, status: int, stream: bool, seconds: float) -> None:
        """A request that was in flight ended with ``status`` after ``seconds``."""
        counter = self._requests.get((status, stream))
        if counter is None:
            counter = self._requests[(status, stream)] = self.metrics.requests.labels(
                self.name, str(status), "true" if stream else "false"
            )
        counter.inc()
        self.duration["true" if stream else "false"].observe(seconds)
        self.in_flight.dec()
