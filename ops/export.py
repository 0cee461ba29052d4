"""`jvreg export`: write one of the registry's exports to a file as the gateway streams
it, with a progress bar: the public register (`/v1/public/{licenses,facilities,
ventures}`, CSV or JSON Lines, no key) or investment flows (`/v1/investments/export`, or
one venture's, CSV or IATI-style JSON, with an API key). The body goes to disk as it
arrives, into `FILE.part`, renamed to FILE only once the answer is complete: a stream
cut short (the registry failed half-way) leaves no file that looks whole."""

import os
from pathlib import Path

import click
import requests
from rich.progress import (
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ops.status import default_ops_key
from shared.settings import Settings

PUBLIC = ("licenses", "facilities", "ventures")
FORMATS = {"public": ("csv", "jsonl"), "investments": ("csv", "iati")}
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "iati": "json"}
CHUNK = 64 * 1024


def export_path(what: str, venture: str | None) -> str:
    if what in PUBLIC:
        return f"/v1/public/{what}"
    return f"/v1/ventures/{venture}/investments/export" if venture else "/v1/investments/export"


def refusal(response: requests.Response) -> str:
    """What a refused export says: its problem document's title and detail."""
    try:
        problem = response.json()
        return f"{response.status_code} {problem.get('title')}: {problem.get('detail')}"
    except ValueError:
        return f"{response.status_code} {response.reason}"


@click.command("export")
@click.argument("what", type=click.Choice([*PUBLIC, "investments"]))
@click.option("--format", "wanted", help="csv (default); jsonl (public register); iati (flows)")
@click.option("--venture", help="investments: only this venture's flows (jv_…)")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="the file")
@click.option(
    "--url",
    envvar="JVREG_URL",
    help="the gateway (JVREG_URL; default http://127.0.0.1:JVREG_GATEWAY_PORT)",
)
@click.option(
    "--key",
    envvar="JVREG_API_KEY",
    help="an API key for investments (JVREG_API_KEY; default: the ops key of `make dev`)",
)
def export(
    what: str,
    wanted: str | None,
    venture: str | None,
    output: Path | None,
    url: str | None,
    key: str | None,
):
    """Write an export of the registry to a file, streamed, with a progress bar."""
    kind = "public" if what in PUBLIC else "investments"
    wanted = wanted or "csv"
    if wanted not in FORMATS[kind]:
        raise click.BadParameter(
            f"{what} exports as {' or '.join(FORMATS[kind])}", param_hint="--format"
        )
    if venture and kind == "public":
        raise click.BadParameter(
            "only investment flows are exported per venture", param_hint="--venture"
        )
    if kind == "investments" and not key:
        key = default_ops_key()
    if kind == "investments" and not key:
        raise click.UsageError(
            "investment flows need an API key: --key, JVREG_API_KEY or JVREG_OPS_KEY"
        )
    base = url or f"http://127.0.0.1:{Settings().gateway_port}"
    target = output or Path(f"{venture or what}.{EXTENSIONS[wanted]}")
    partial = target.with_name(target.name + ".part")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    columns = (
        TextColumn("{task.description}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    try:
        with requests.get(
            base.rstrip("/") + export_path(what, venture),
            params={"format": wanted},
            headers=headers,
            stream=True,
            timeout=(10, 300),
        ) as response:
            if response.status_code != 200:
                raise click.ClickException(f"the registry refused the export: {refusal(response)}")
            with Progress(*columns) as bar, partial.open("wb") as out:
                task = bar.add_task(f"{what} → {target}", total=None)
                lines = 0
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    lines += chunk.count(b"\n")
                    bar.update(task, advance=len(chunk))
    except requests.RequestException as error:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"the export did not complete: {error}") from None
    os.replace(partial, target)
    counted = f", {lines:,} lines" if wanted != "iati" else ""
    click.echo(f"wrote {target} ({target.stat().st_size:,} bytes{counted})")
