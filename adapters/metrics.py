"""The bot's Prometheus metrics (`/metrics`): the metric objects, in a registry of the bot's own.

A `CollectorRegistry` per bot, never prometheus_client's global one: two bots in one process
(tests, benchmarks) keep their counts apart. The parts of the bot are told nothing of this
module: the dispatcher, the outbox workers, the reminder scheduler and the outside clients
each take an optional plain callable (models/ports.py: CommandObserver, DeliveryObserver,
DurationObserver), and bot.py hands them this object's methods. Built only with the web server.

Label values come from small fixed sets, never from what people type: a command's registered
name (or "unknown"), a result, a state, an outbox kind, a network, a service name.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.lifecycle import State
from models.ports import DurationObserver

STATES = tuple(s.value for s in State)
OUTBOX_KINDS = ("chat", "mail", "bugzilla", "trees")
SERVICES = ("bugzilla", "treestatus", "smtp")
COMMAND_RESULTS = frozenset({"ok", "refused", "usage", "error", "ratelimited"})
DELIVERY_RESULTS = frozenset({"ok", "retry", "failed"})
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every `downtimebot_*` metric. Counters and histograms are fed as things happen; the
    gauges of the database and the transports are set by `refresh` at each scrape."""

    def __init__(self, *, version: str, commit: str | None, commands: Collection[str], networks: Collection[str]):
        self.registry = CollectorRegistry()
        self._commands = frozenset(commands)
        self._networks = frozenset(networks) | frozenset(OUTBOX_KINDS)
        r = self.registry
        self.downtimes = Gauge("downtimebot_downtimes", "Downtimes in the database, by state.", ["state"], registry=r)
        self.commands = Counter(
            "downtimebot_commands_total", "Chat lines for the bot, by command and result.", ["command", "result"],
            registry=r,
        )
        self.command_duration = Histogram(
            "downtimebot_command_duration_seconds", "Seconds from a chat line to its answer.", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.outbox_pending = Gauge(
            "downtimebot_outbox_pending", "Outbox rows waiting for delivery, by kind.", ["kind"], registry=r
        )
        self.outbox_oldest_age = Gauge(
            "downtimebot_outbox_oldest_age_seconds", "Age of the oldest outbox row waiting for delivery, by kind "
            "(0 when none waits).", ["kind"], registry=r,
        )
        self.messages_sent = Counter(
            "downtimebot_messages_sent_total", "Outbox deliveries, by chat network (or mail, bugzilla, trees) and "
            "result (ok, retry, failed).", ["network", "result"], registry=r,
        )
        self.external = Histogram(
            "downtimebot_external_request_duration_seconds", "Seconds per request to an outside service.",
            ["service"], registry=r,
        )
        self.transport_connected = Gauge(
            "downtimebot_transport_connected", "1 when the chat network is connected, else 0.", ["network"], registry=r
        )
        self.reminder_lateness = Histogram(
            "downtimebot_reminder_lateness_seconds", "Seconds between a reminder's due time and its queueing.",
            registry=r, buckets=(0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0),
        )
        self.is_leader = Gauge(
            "downtimebot_is_leader", "1 when this instance leads (always, without [ha]), 0 when it stands by.",
            registry=r,
        )
        self.is_leader.set(1)
        self.build_info = Gauge(
            "downtimebot_build_info", "The running version and commit (always 1).", ["version", "commit"], registry=r
        )
        self.build_info.labels(version=version, commit=commit or "unknown").set(1)
        for state in STATES:
            self.downtimes.labels(state=state)
        for kind in OUTBOX_KINDS:
            self.outbox_pending.labels(kind=kind)
            self.outbox_oldest_age.labels(kind=kind)

    # ---- fed as things happen (the observers of models/ports.py) ------------------------------

    def command(self, command: str, result: str, seconds: float) -> None:
        """CommandObserver: one chat line for the bot."""
        name = command if command in self._commands else "unknown"
        self.commands.labels(command=name, result=result if result in COMMAND_RESULTS else "error").inc()
        self.command_duration.observe(seconds)

    def delivery(self, network: str, result: str) -> None:
        """DeliveryObserver: one outbox delivery."""
        if network in self._networks and result in DELIVERY_RESULTS:
            self.messages_sent.labels(network=network, result=result).inc()

    def request(self, service: str) -> DurationObserver:
        """The DurationObserver of one outside service (bugzilla, treestatus, smtp)."""
        if service not in SERVICES:
            raise ValueError(f"not a service the metrics know: {service}")
        return self.external.labels(service=service).observe

    def reminder(self, seconds: float) -> None:
        """DurationObserver: a reminder queued `seconds` after its due time."""
        self.reminder_lateness.observe(seconds)

    # ---- read at each scrape --------------------------------------------------------------------

    def refresh(
        self,
        downtimes: Mapping[str, int],
        outbox: Mapping[str, tuple[int, float]],
        connected: Mapping[str, bool],
    ) -> None:
        """Set the gauges: downtimes by state; per outbox kind (rows pending, oldest age in
        seconds); per chat network, connected or not."""
        for state in STATES:
            self.downtimes.labels(state=state).set(downtimes.get(state, 0))
        for kind in OUTBOX_KINDS:
            pending, age = outbox.get(kind, (0, 0.0))
            self.outbox_pending.labels(kind=kind).set(pending)
            self.outbox_oldest_age.labels(kind=kind).set(age)
        for network, up in connected.items():
            if network in self._networks:
                self.transport_connected.labels(network=network).set(1 if up else 0)

    def leads(self, leading: bool) -> None:
        """[ha]: whether this instance leads now."""
        self.is_leader.set(1 if leading else 0)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
