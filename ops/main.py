"""`jvreg`: the registry's command line for developers, ops and regulators."""

import warnings

import click

# The CLI does not run on eventlet; nameko's import of it need not warn ops.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from ops.broker import broker_users  # noqa: E402
from ops.dev import dev  # noqa: E402
from ops.dlq import dlq  # noqa: E402
from ops.export import export  # noqa: E402
from ops.keys import keys  # noqa: E402
from ops.reconcile import reconcile_command  # noqa: E402
from ops.regulators import regulators  # noqa: E402
from ops.search import search  # noqa: E402
from ops.seed import seed  # noqa: E402
from ops.signing_keys import signing_keys  # noqa: E402
from ops.status import status  # noqa: E402
from ops.verify import verify_command  # noqa: E402
from ops.watch import watch  # noqa: E402


@click.group()
def cli():
    """JV Pharma Registry: Pakistan–China pharmaceutical joint ventures."""


cli.add_command(broker_users)
cli.add_command(dev)
cli.add_command(dlq)
cli.add_command(export)
cli.add_command(keys)
cli.add_command(reconcile_command)
cli.add_command(regulators)
cli.add_command(search)
cli.add_command(seed)
cli.add_command(status)
cli.add_command(signing_keys)
cli.add_command(verify_command)
cli.add_command(watch)

if __name__ == "__main__":
    cli()
