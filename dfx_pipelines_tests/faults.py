"""The fault mix the every-job fault tests use: a share of all requests gets each kind of fault at once."""

from __future__ import annotations

from dfx_pipelines.platform.sandbox import Faults

KINDS = ("rate_limit", "server_error", "drop", "slow", "expire_token")


def inject_every_kind(faults: Faults, rate: float, *, bearer_prefix: str) -> None:
    """`rate` of all requests get each kind of fault (drops: half before the server acts, half after).
    The sandbox tries the rules in order, each with its own draw, so each rule's probability is scaled up
    by the share the earlier ones took. Expired tokens only on `bearer_prefix`, the paths that take an
    access token (the token endpoint takes none). Rate limits ask for no wait, slow answers take 0.2 s:
    the mix is about recovering, not about sleeping."""
    rules = [
        ("rate_limit", rate, {"retry_after": 0}),
        ("server_error", rate, {"status": 503}),
        ("drop", rate / 2, {"when": "before"}),
        ("drop", rate / 2, {"when": "after"}),
        ("slow", rate, {"delay": 0.2}),
        ("expire_token", rate, {"path_prefix": bearer_prefix}),
    ]
    taken = 0.0
    for kind, share, options in rules:
        faults.inject(kind, count=None, probability=min(1.0, share / (1 - taken)), **options)
        taken += share
