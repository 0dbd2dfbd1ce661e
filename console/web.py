"""Classroom mode: ``safelab web`` serves the console to browsers with textual-serve.

A teacher projects it and students follow on their laptops. Every browser connection gets
its own console process (textual-serve starts the command once per WebSocket), so one
student's keys never move another's screen; they share the results store.

Offline: textual-serve 1.1.3 serves its JavaScript, CSS and fonts itself except one
``<link>`` in its page template to a web-font CDN. :func:`offline_templates` writes a copy of
the installed template with that link replaced by an ``@font-face`` rule on the package's own
``static/fonts/``, so a lab without internet gets the same page. Page URLs are built from the
address each browser used (``Host`` header), so the same server works on loopback and on the
LAN.

Safety: bound to 127.0.0.1 unless ``--host`` is given, and it says which. The served command
is ``sys.executable -m console.web`` (never a bare ``python``), so the children run the same
interpreter and environment as the server.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

FONT_FACE = """<style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf")
          format("truetype");
        font-style: normal;
      }
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf")
          format("truetype");
        font-style: italic;
      }
    </style>"""

_REMOTE_LINK = re.compile(r"<link\b[^>]*href=\"https?://[^\"]*\"[^>]*/?>", re.S)


def served_command() -> str:
    """The shell command textual-serve runs per browser: this interpreter, this package."""
    return shlex.join([sys.executable, "-m", "console.web"])


def offline_templates(directory: Path) -> Path:
    """Write textual-serve's page template without remote links into ``directory``.

    Raises ``RuntimeError`` if the installed template has a remote reference this does not
    know how to replace (a new textual-serve release): better no server than a page that
    silently waits for the internet.
    """
    template = resources.files("textual_serve").joinpath("templates/app_index.html")
    text = template.read_text(encoding="utf-8")
    text, replaced = _REMOTE_LINK.subn(FONT_FACE, text, count=1)
    remote = [
        url
        for url in re.findall(r"(?:href|src)=\"(https?://[^\"]*)\"", text)
        if "w3.org" not in url
    ]
    if remote or not replaced:
        raise RuntimeError(
            "textual-serve's page template changed (remote assets: "
            f"{remote or 'the font link is gone'}); update console/web.py"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app_index.html").write_text(text, encoding="utf-8")
    return directory


def where_text(host: str, port: int) -> str:
    """What ``safelab web`` says about who can connect."""
    if host in (LOOPBACK, "localhost", "::1"):
        return (
            f"serving the SAFE Lab console on http://{LOOPBACK}:{port} (loopback only: "
            "browsers on this machine; give --host 0.0.0.0 to serve the LAN)"
        )
    shown = "all interfaces" if host in ("0.0.0.0", "::", "") else host
    return (
        f"serving the SAFE Lab console on {shown}, port {port} (reachable from the network: "
        "anyone who can reach this port gets a console, with no password)"
    )


def make_server(host: str, port: int, templates: Path) -> Any:
    """A textual-serve Server whose page URLs follow the address each browser used."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.server import Server, to_int

    class ClassroomServer(Server):
        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            base = f"{request.scheme}://{request.host}"
            static = request.app.router["static"].url_for(filename="/")
            websocket = request.app.router["websocket"].url_for()
            scheme = "wss" if request.scheme == "https" else "ws"
            return {
                "font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}{websocket}",
                "config": {"static": {"url": f"{base}{static}".rstrip("/") + "/"}},
                "application": {"name": "SAFE Lab"},
            }

        async def on_startup(self, app: web.Application) -> None:
            return None  # the CLI says where it serves; no banner

    return ClassroomServer(
        served_command(), host=host, port=port, title="SAFE Lab", templates_path=templates
    )


def serve(host: str = LOOPBACK, port: int = 8000) -> None:
    """Serve until Ctrl+C (blocking)."""
    with tempfile.TemporaryDirectory(prefix="safelab-web-") as tmp:
        server = make_server(host, port, offline_templates(Path(tmp)))
        server.serve()


def child_main() -> None:
    """One console for one browser (what :func:`served_command` runs).

    ``SAFELAB_DB`` picks the results database, as for the CLI; ``SAFELAB_TOKEN`` a token spec
    the console starts with.
    """
    from console.app import find_triage, run_console
    from screens.lab import Lab
    from screens.tokens import choice_for_spec

    db = os.environ.get("SAFELAB_DB")
    lab = Lab(db_path=Path(db) if db else None, triage=find_triage())
    spec = os.environ.get("SAFELAB_TOKEN")
    if spec:
        lab.token = choice_for_spec(spec)
    run_console(lab)


if __name__ == "__main__":
    child_main()
