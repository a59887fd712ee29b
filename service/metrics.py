"""Prometheus metrics of one app, in its own registry (several apps can share a process).

- ``promptmm_http_request_duration_seconds{endpoint,method,status}``: latency per route
  (the route's path template; ``unmatched`` for unknown paths, to bound label cardinality;
  observed by :mod:`service.observe`).
- ``promptmm_finetune_duration_seconds``: one user-vector update (fold-in or BPR fine-tune).
- ``promptmm_model_info{model_version,dataset,index_kind} 1``: the served model.
- ``promptmm_index_items``: items in the served index.
- ``promptmm_interactions_accepted_total``: item ids durably recorded.
- ``promptmm_fallback_total``: recommendations answered with the popularity fallback.
- ``promptmm_response_cache_total{result}``: ``/recommend`` answers found in the response cache
  (``hit``) or computed (``miss``; not counted when the cache is off).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FINETUNE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The collectors of one app; ``render`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "promptmm_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["endpoint", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.finetune_duration = Histogram(
            "promptmm_finetune_duration_seconds",
            "Latency of one incremental user-vector update (fold-in or BPR fine-tune).",
            buckets=FINETUNE_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "promptmm_model_info",
            "The served model version (value 1).",
            ["model_version", "dataset", "index_kind"],
            registry=self.registry,
        )
        self.index_items = Gauge(
            "promptmm_index_items", "Items in the served index.", registry=self.registry
        )
        self.interactions = Counter(
            "promptmm_interactions_accepted",
            "Item ids durably recorded through /interactions.",
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "promptmm_fallback",
            "Recommendations answered with the popularity fallback.",
            registry=self.registry,
        )

        response_cache = Counter(
            "promptmm_response_cache",
            "/recommend answers served from the response cache (hit) or computed (miss).",
            ["result"],
            registry=self.registry,
        )
        self.cache_hits = response_cache.labels("hit")
        self.cache_misses = response_cache.labels("miss")

    def observe_finetune(self, seconds: float) -> None:
        self.finetune_duration.observe(seconds)

    def set_model(self, model_version: str, dataset: str, index_kind: str, n_items: int) -> None:
        """Point the info gauge at the served model (dropping the previous one)."""
        self.model_info.clear()
        self.model_info.labels(model_version, dataset, index_kind).set(1)
        self.index_items.set(n_items)

    def render(self) -> bytes:
        return generate_latest(self.registry)
