"""`jvreg status`: the running registry at a glance, read from the gateway's /metrics
(the figures Prometheus scrapes, so the two never disagree): each service up or down
with its instances and outbox backlog, the consumer queues' lag, the search index's,
dead letters and failing webhook deliveries. Exit 1 when a service is down."""

from collections import defaultdict
from dataclasses import dataclass, field

import click
import requests
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from ops.dev import VAR
from shared.settings import Settings

SEARCH_QUEUE_PREFIX = "search."


@dataclass
class Status:
    """The samples of one scrape that `jvreg status` shows."""

    services: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    queues: dict[tuple[str, str], dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    dead_letters: float | None = None
    deliveries: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, exposition: str) -> "Status":
        status = cls()
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                labels, name = sample.labels, sample.name.removeprefix("jvreg_")
                if name in ("service_up", "service_instances", "outbox_pending_events"):
                    status.services[labels["service"]][name] = sample.value
                elif name.startswith("queue_"):
                    status.queues[labels["queue"], labels["service"]][name] = sample.value
                elif name == "dead_letters":
                    status.dead_letters = sample.value
                elif name == "webhook_deliveries":
                    status.deliveries[labels["outcome"]] = sample.value
        return status

    @property
    def down(self) -> list[str]:
        return [name for name, figures in self.services.items() if not figures.get("service_up")]


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def services_table(status: Status) -> Table:
    table = Table(title="services")
    for heading in ("service", "state", "instances", "outbox backlog"):
        table.add_column(heading, justify="left" if heading in ("service", "state") else "right")
    for name, figures in sorted(status.services.items()):
        up = figures.get("service_up")
        table.add_row(
            name,
            "[green]up[/]" if up else "[red]down[/]",
            count(figures.get("service_instances")),
            count(figures.get("outbox_pending_events")),
        )
    return table


def queues_table(title: str, rows: dict[tuple[str, str], dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("queue", no_wrap=True)
    table.add_column("service")
    for heading in ("waiting", "consumers", "oldest event held"):
        table.add_column(heading, justify="right")
    for (queue, service), figures in sorted(rows.items()):
        table.add_row(
            queue,
            service,
            count(figures.get("queue_messages")),
            count(figures.get("queue_consumers")),
            seconds(figures.get("queue_oldest_message_age_seconds")),
        )
    return table


def fetch(url: str, key: str) -> str:
    try:
        response = requests.get(
            f"{url.rstrip('/')}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=15
        )
    except requests.RequestException as error:
        raise click.ClickException(f"the gateway at {url} did not answer: {error}") from None
    if response.status_code != 200:
        raise click.ClickException(
            f"{url}/metrics answered {response.status_code}: {response.text[:300]}"
        )
    return response.text


def default_ops_key() -> str | None:
    """JVREG_OPS_KEY, or the one `make dev` keeps in var/ops-key."""
    path = VAR / "ops-key"
    return Settings().ops_key or (path.read_text().strip() if path.exists() else None)


@click.command()
@click.option("--url", default=None, help="the gateway (default: 127.0.0.1:JVREG_GATEWAY_PORT)")
@click.option("--key", default=None, help="an ops API key (default: JVREG_OPS_KEY, var/ops-key)")
def status(url: str | None, key: str | None):
    """Summarise the running registry: services, outbox backlog, dead letters,
    consumer lag, search index lag, failing webhook deliveries."""
    url = url or f"http://127.0.0.1:{Settings().gateway_port}"
    key = key or default_ops_key()
    if not key:
        raise click.UsageError("give an ops API key with --key or JVREG_OPS_KEY")
    found = Status.of(fetch(url, key))
    search = {k: v for k, v in found.queues.items() if k[0].startswith(SEARCH_QUEUE_PREFIX)}
    consumers = {k: v for k, v in found.queues.items() if k not in search}
    console = Console()
    console.print(services_table(found))
    console.print(queues_table("consumer queues", consumers))
    console.print(queues_table("search index lag (events not yet in the index)", search))
    dead = found.dead_letters
    console.print(
        f"dead letters: {count(dead)}" + (" — see `jvreg dlq list`" if dead else ""),
        style="red" if dead else None,
    )
    failing = sum(found.deliveries.get(outcome, 0) for outcome in ("retrying", "failed"))
    console.print(
        f"webhook deliveries failing: {count(failing)} "
        f"(retrying {count(found.deliveries.get('retrying'))}, "
        f"failed {count(found.deliveries.get('failed'))}; "
        f"delivered {count(found.deliveries.get('delivered'))})",
        style="red" if failing else None,
    )
    if found.down:
        console.print(f"down: {', '.join(sorted(found.down))}", style="bold red")
        raise SystemExit(1)
