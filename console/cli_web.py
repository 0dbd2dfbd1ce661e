"""``safelab web``: the console in browsers for a class (see :mod:`console.web`)."""

from __future__ import annotations

import os

import click

from console.web import LOOPBACK, serve, where_text


@click.command("web")
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to listen on; 0.0.0.0 serves the LAN (no password: a lab network only).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--token", "token_spec", metavar="SPEC", help="Token spec every console starts with.")
@click.pass_context
def web_command(ctx: click.Context, host: str, port: int, token_spec: str | None) -> None:
    """Serve the console to browsers (classroom mode): one console per browser tab."""
    db = ctx.obj.get("db") if ctx.obj else None
    if db is not None:
        os.environ["SAFELAB_DB"] = str(db)  # the per-browser consoles inherit it
    if token_spec:
        from screens.tokens import choice_for_spec

        choice_for_spec(token_spec)  # a bad spec fails here, once, with the CLI's one line
        os.environ["SAFELAB_TOKEN"] = token_spec
    click.echo(where_text(host, port))
    click.echo("Ctrl+C stops the server and every console it started.")
    serve(host, port)


def register(group: click.Group) -> None:
    group.add_command(web_command)
