"""How a person at a browser hands us an OAuth authorization code, for the `dfx connect` commands:
a one-shot listener on a loopback port that receives the redirect, or a prompt where they paste the
address they were redirected to (when the app's registered callback is not on this machine).

The redirect's query string carries the code: it is never logged or echoed.
"""

import http.server
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import click

from dfx_pipelines.platform.errors import ConfigError


class LoopbackRedirectListener:
    """Receives the OAuth redirect on http://127.0.0.1:<port>/callback (for a person at a browser)."""

    def __init__(self, port: int = 0):
        self._result: str | None = None
        self._ready = threading.Event()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urllib.parse.urlsplit(self.path).path != "/callback":
                    self.send_response(404)
                    self.end_headers()
                    return
                listener._result = self.path
                listener._ready.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"DataFlow-Xpert received the authorization. You can close this tab.")

            def log_message(self, *args: Any) -> None:  # the query string carries the code: never log it
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", port), Handler)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/callback"

    def wait(self, timeout: float = 300) -> str:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            if not self._ready.wait(timeout):
                raise ConfigError(f"no authorization arrived at {self.redirect_uri} within {timeout:.0f}s")
            return self._result or ""
        finally:
            self._server.shutdown()
            self._server.server_close()


def code_receiver(*, paste: bool, paste_redirect_uri: str, port: int) -> tuple[str, Callable[[str], str]]:
    """(redirect URI to register the consent with, function from the consent URL to the redirected-to
    address): pasted by the person, or received on a loopback listener at `port` (0: any free port)."""
    if paste:

        def pasted(url: str) -> str:
            click.echo(f"Open this URL, approve, then paste the address you were redirected to:\n\n  {url}\n")
            return click.prompt("redirect URL", hide_input=True)

        return paste_redirect_uri, pasted
    listener = LoopbackRedirectListener(port)

    def received(url: str) -> str:
        click.echo(f"Open this URL in a browser and approve:\n\n  {url}\n\nWaiting on {listener.redirect_uri} ...")
        return listener.wait()

    return listener.redirect_uri, received
