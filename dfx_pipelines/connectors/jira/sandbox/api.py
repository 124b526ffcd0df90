"""The plumbing every sandbox route shares: the call being served, Jira-shaped errors, paging parameters."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dfx_pipelines.connectors.jira.sandbox.render import RenderContext
from dfx_pipelines.platform.sandbox import Request, Response

if TYPE_CHECKING:
    from dfx_pipelines.connectors.jira.sandbox.app import JiraSandbox
    from dfx_pipelines.connectors.jira.sandbox.records import IssueRecord


class ApiError(Exception):
    """Answered as Jira's ErrorCollection: `{"errorMessages": [...], "errors": {...}}`."""

    def __init__(self, status: int, *messages: str, errors: dict[str, str] | None = None):
        super().__init__(status, messages)
        self.status = status
        self.messages = list(messages)
        self.errors = errors or {}

    def response(self) -> Response:
        return Response.json({"errorMessages": self.messages, "errors": self.errors}, status=self.status)


@dataclass
class Call:
    """One API request being served: the request, the route's path parameters, how to render."""

    app: JiraSandbox
    request: Request
    params: dict[str, str]
    ctx: RenderContext
    body_cache: Any = field(default=None, repr=False)

    @property
    def site(self):
        return self.app.site

    @property
    def cloud(self) -> bool:
        return self.app.cloud

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.request.arg(name, default)

    def args(self, name: str) -> list[str]:
        return self.request.query.get(name, [])

    def json_body(self) -> dict[str, Any]:
        if self.body_cache is None:
            try:
                body = self.request.json()
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "Unexpected character in the request body: it is not valid JSON.") from None
            if not isinstance(body, dict):
                raise ApiError(400, "The request body must be a JSON object.")
            self.body_cache = body
        return self.body_cache

    def int_arg(self, name: str, default: int, *, minimum: int = 0, source: dict[str, Any] | None = None) -> int:
        raw = source.get(name) if source is not None else self.arg(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, f"The '{name}' parameter must be an integer, got '{raw}'.") from None
        if value < minimum:
            raise ApiError(400, f"The '{name}' parameter must be at least {minimum}.")
        return value

    def issue(self, key_or_id: str) -> IssueRecord:
        record = self.site.find(key_or_id)
        if record is None or not self.app.visible(record):
            raise ApiError(404, "Issue does not exist or you do not have permission to see it.")
        return record


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]  # matched against the path after /rest/
    handler: Handler
    scopes: tuple[str, ...]  # OAuth scopes a bearer token needs (any one set member each); () = none
    name: str  # for call counts: "GET api/search/jql"
    flavours: tuple[str, ...] = ("cloud", "datacenter")


def route(
    method: str,
    path: str,
    handler: Handler,
    scopes: tuple[str, ...] = ("read:jira-work",),
    *,
    flavours=("cloud", "datacenter"),
) -> Route:
    """`path` like `api/{v}/issue/{key}/changelog` (after /rest/); `{v}` matches the REST version."""
    regex = re.escape(path).replace(r"\{v\}", r"(?P<v>2|3|latest)")
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    name = f"{method} " + path.replace("{v}/", "")
    return Route(method, re.compile(f"^{regex}$"), handler, scopes, name, flavours)


def page_values(values: list[Any], start_at: int, max_results: int, self_url: str | None = None) -> dict[str, Any]:
    """Agile-style page: `{maxResults, startAt, total, isLast, values}`."""
    page = values[start_at : start_at + max_results]
    payload: dict[str, Any] = {
        "maxResults": max_results,
        "startAt": start_at,
        "total": len(values),
        "isLast": start_at + len(page) >= len(values),
    }
    if self_url:
        payload["self"] = self_url
    payload["values"] = page
    return payload
