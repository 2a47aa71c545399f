"""The node's Prometheus metrics: one registry per node, rendered as exposition text.

Every node keeps its own :class:`prometheus_client.CollectorRegistry` (never the
library's global one: a test or a launcher may run several nodes in one process).
The figures come from three places:

- the task handler, through the :class:`~mesh.node.handler.TaskObserver` hooks
  (:meth:`NodeMetrics.answered`, :meth:`NodeMetrics.executed`): tasks by model and
  reply code, node-side latency, compute time, batch sizes, receipts issued, task
  bytes in and out;
- the network, through :class:`mesh.node.netmetrics.MeteredNetwork`: our own DHT and
  gossip operations and their failures, request bytes on every protocol;
- gauges read when scraped (queue depth and capacity, tasks running, connected
  peers, readiness, reachability), from callables the node hands in.

Model labels are the *served* model names: a task naming any other model_root is
counted under ``other``, so a client signing tasks for random roots cannot grow the
label set without bound. Reply codes are the closed set of ``mesh.errors`` codes,
``ok`` and ``no-reply``.

:func:`render` produces the text exposition format (``/metrics``) without any of
prometheus-client's threaded HTTP servers: the node serves it on trio
(:mod:`mesh.node.status_http`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "NodeMetrics", "render"]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # text/plain; version=0.0.4
OTHER_MODEL = "other"  # tasks for a model this node does not serve (or undecodable)
# Node-side seconds from request in to reply out: tiny models answer in ~1 ms,
# language models may generate for tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Batches are at most --max-batch (default 16); 64 and 128 for operators who raise it.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class NodeMetrics:
    """The metrics of one node. Thread-safe (prometheus-client locks its values).

    Args:
        models: model_root -> served name (read at each observation: models are
            fixed for a node's life, the mapping is the runner's).
    """

    def __init__(self, *, models: Callable[[], Mapping[bytes, str]]) -> None:
        self._models = models
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter(
            "mesh_tasks", "Task requests answered, by model and reply code", ["model", "code"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "mesh_task_latency_seconds",
            "Node-side time from a task request's arrival to its reply, by model",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "mesh_task_compute_seconds",
            "Compute time of the batch each served task ran in, by model",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "mesh_batch_size", "Size of the batch each served task ran in, by model",
            ["model"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.receipts = Counter(
            "mesh_receipts_issued", "Receipts signed and appended to the receipt log", registry=r
        )
        self.task_bytes = Counter(
            "mesh_task_bytes", "Bytes of task requests (in) and replies (out)", ["direction"],
            registry=r,
        )  # fmt: skip
        self.request_bytes = Counter(
            "mesh_request_bytes",
            "Request-protocol message bytes, by protocol and direction (in: received)",
            ["protocol", "direction"], registry=r,
        )  # fmt: skip
        self.dht_ops = Counter(
            "mesh_dht_operations", "This node's own DHT operations, by operation and outcome",
            ["op", "outcome"], registry=r,
        )  # fmt: skip
        self.gossip_ops = Counter(
            "mesh_gossip_operations", "This node's gossip operations, by operation and outcome",
            ["op", "outcome"], registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "mesh_outbound_requests", "Requests this node sent, by protocol and outcome",
            ["protocol", "outcome"], registry=r,
        )  # fmt: skip
        self.start_time = Gauge(
            "mesh_start_time_seconds", "When the node started (Unix time)", registry=r
        )
        self.start_time.set_to_current_time()

    # -- TaskObserver (mesh.node.handler) -------------------------------------------

    def model_label(self, model_root: bytes | None) -> str:
        """The served name of ``model_root``; ``other`` for anything else."""
        if model_root is None:
            return OTHER_MODEL
        return self._models().get(model_root, OTHER_MODEL)

    def answered(
        self, model_root: bytes | None, code: str, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        """A task request was answered (or dropped: ``no-reply``)."""
        model = self.model_label(model_root)
        self.tasks.labels(model, code).inc()
        self.latency.labels(model).observe(max(0.0, seconds))
        self.task_bytes.labels("in").inc(bytes_in)
        self.task_bytes.labels("out").inc(bytes_out)

    def executed(self, model_root: bytes, batch_size: int, compute_ms: float) -> None:
        """A task ran and its receipt was issued."""
        model = self.model_label(model_root)
        self.compute.labels(model).observe(max(0.0, compute_ms) / 1000)
        self.batch_size.labels(model).observe(batch_size)
        self.receipts.inc()

    # -- gauges read at scrape time -----------------------------------------------------

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge whose value is ``read()`` at each scrape (called on the scraping thread)."""
        Gauge(name, doc, registry=self.registry).set_function(read)

    def info_gauge(self, name: str, doc: str, labels: Mapping[str, str]) -> None:
        """A constant gauge of 1 carrying facts as labels (``mesh_node_info``)."""
        gauge = Gauge(name, doc, list(labels), registry=self.registry)
        gauge.labels(*labels.values()).set(1)

    def labelled_gauge(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """A gauge with one label whose values are ``read()`` at each scrape."""
        self.registry.register(_MappingCollector(name, doc, label, read))


class _MappingCollector(Collector):
    """A collector yielding one gauge family from a mapping read at scrape time."""

    def __init__(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for key, value in sorted(self._read().items()):
            family.add_metric([key], value)
        return [family]

    def describe(self) -> Iterable[Metric]:
        # Without values: registration must not read a node that is not running yet.
        return [GaugeMetricFamily(self._name, self._doc, labels=[self._label])]


def render(metrics: NodeMetrics) -> bytes:
    """The exposition text of every metric of ``metrics`` (what ``/metrics`` answers)."""
    return generate_latest(metrics.registry)
