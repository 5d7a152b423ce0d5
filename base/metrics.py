"""Prometheus metrics, one registry per app (tests build many apps). With several worker processes
(``PROMETHEUS_MULTIPROC_DIR`` set by ``livecart serve --workers N``) ``/metrics`` aggregates all of them."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.buys = Counter("livecart_buy_total", "Buy requests by result.", ["result"], registry=r)
        self.buy_seconds = Histogram(
            "livecart_buy_seconds",
            "Buy request latency (reserve + SQL commit).",
            buckets=BUY_BUCKETS,
            registry=r,
        )
        self.active_reservations = Gauge(
            "livecart_active_reservations",
            "Unpaid reservations holding stock, as of the last sweep.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.sweeps = Counter("livecart_sweeper_runs_total", "Sweeper passes.", registry=r)
        self.swept = Counter(
            "livecart_sweeper_released_total",
            "Reservations returned to sale by the sweeper.",
            ["reason"],
            registry=r,
        )
        self.reconciles = Counter(
            "livecart_reconcile_runs_total", "Reconcile runs by trigger.", ["trigger"], registry=r
        )
        self.order_batches = Counter(
            "livecart_order_commit_batches_total", "Group commits of order rows.", registry=r
        )
        self.video_sessions = Gauge(
            "livecart_video_sessions",
            "Live WebRTC sessions in this process: whip (ingests) and whep (viewers).",
            ["kind"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.video_forwards = Counter(
            "livecart_video_forwards_total",
            "Video requests forwarded to the sibling worker that holds the room's video, by result: answered,"
            " owner_gone (it took no connection; the room counts as not live), failed (no answer: 503).",
            ["result"],
            registry=r,
        )
        self.hls_segments = Counter(
            "livecart_hls_segments_total", "HLS segments written by this process's encoders.", registry=r
        )
        self.hls_restarts = Counter(
            "livecart_hls_encoder_restarts_total",
            "HLS encoder processes that exited during an ingest and were started again.",
            registry=r,
        )
        self.hls_dropped = Counter(
            "livecart_hls_dropped_frames_total",
            "Frames not encoded because the room's HLS encoder was behind (or restarting), by kind.",
            ["kind"],
            registry=r,
        )
        self.payments = Counter(
            "livecart_payment_events_total", "Payment webhook events by outcome.", ["outcome"], registry=r
        )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
