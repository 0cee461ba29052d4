"""`jvreg`: the registry's command line for developers, ops and regulators."""

import click

from shared.cli.dev import dev


@click.group()
def cli():
    """JV Pharma Registry: Pakistan–China pharmaceutical joint ventures."""


cli.add_command(dev)

if __name__ == "__main__":
    cli()
