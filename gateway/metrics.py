"""Prometheus metrics, in a registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound = Counter(
            "frontdesk_inbound_messages",
            "Inbound messages accepted, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "frontdesk_inbound_duplicates",
            "Inbound deliveries recognised as retries and not processed again",
            ["channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "frontdesk_inbound_rejected",
            "Inbound requests refused, by channel and reason",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.replies = Counter(
            "frontdesk_replies_sent",
            "Replies delivered to a channel",
            ["channel"],
            registry=self.registry,
        )
        self.failures = Counter(
            "frontdesk_failures",
            "Failures by stage (turn, delivery, delivery_retry)",
            ["stage"],
            registry=self.registry,
        )
        self.inbound_pending = Gauge(
            "frontdesk_inbound_pending",
            "Inbound messages stored but not yet processed",
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "frontdesk_outbox_pending",
            "Replies waiting in the outbox",
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "frontdesk_turn_seconds",
            "Time from taking an inbound message to its replies being in the outbox",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

        self.loop_failures = Counter(
            "frontdesk_loop_failures",
            "Background loops that failed (or returned) and were started again, by loop",
            ["loop"],
            registry=self.registry,
        )
        self.loop_up = Gauge(
            "frontdesk_loop_up",
            "1 while a background loop runs, 0 while it waits to be restarted",
            ["loop"],
            registry=self.registry,
        )
        self.abilities = Counter(
            "frontdesk_ability_calls",
            "Ability calls by ability and outcome (ok, refused, invalid, failed)",
            ["ability", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
