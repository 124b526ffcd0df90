"""Handing an OAuth authorization code from a person's browser to `dfx connect`: the loopback listener
takes the redirect once (and nothing else), gives up clearly, and the pasted address is taken as typed."""

import threading
import time
import urllib.error
import urllib.request

import pytest

from dfx_pipelines.platform import consent
from dfx_pipelines.platform.consent import LoopbackRedirectListener, code_receiver
from dfx_pipelines.platform.errors import ConfigError


def _browser(redirect_uri: str, statuses: list[int]) -> None:
    """What the browser does after consent: a stray request first, then the redirect."""
    base = redirect_uri.removesuffix("/callback")
    for path in ("/favicon.ico", "/callback?code=the-code&state=the-state"):
        for _ in range(100):  # until the listener serves
            try:
                with urllib.request.urlopen(base + path, timeout=2) as response:
                    statuses.append(response.status)
                break
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                break
            except urllib.error.URLError:
                time.sleep(0.02)


def test_the_loopback_listener_takes_the_redirect(capsys: pytest.CaptureFixture[str]) -> None:
    redirect_uri, receive = code_receiver(paste=False, paste_redirect_uri="unused", port=0)
    assert redirect_uri.startswith("http://127.0.0.1:") and redirect_uri.endswith("/callback")
    statuses: list[int] = []
    browser = threading.Thread(target=_browser, args=(redirect_uri, statuses))
    browser.start()
    assert receive("https://login.example/authorize?x=1") == "/callback?code=the-code&state=the-state"
    browser.join(5)
    assert statuses == [404, 200]
    shown = capsys.readouterr()
    assert "https://login.example/authorize?x=1" in shown.out and "the-code" not in shown.out + shown.err


def test_the_listener_gives_up_with_a_clear_error() -> None:
    listener = LoopbackRedirectListener(0)
    with pytest.raises(ConfigError, match=r"no authorization arrived at http://127\.0\.0\.1:\d+/callback"):
        listener.wait(timeout=0.2)


def test_a_pasted_redirect_is_taken_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        consent.click, "prompt", lambda text, hide_input: "https://app.example/cb?code=c&state=s" if hide_input else ""
    )
    redirect_uri, receive = code_receiver(paste=True, paste_redirect_uri="https://app.example/cb", port=0)
    assert redirect_uri == "https://app.example/cb"
    assert receive("https://login.example/authorize") == "https://app.example/cb?code=c&state=s"
