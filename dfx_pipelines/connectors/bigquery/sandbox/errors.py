"""Google's JSON error shape, and the BigQuery errors the sandbox raises (reason + HTTP status + message)."""

from __future__ import annotations

from typing import Any

from dfx_pipelines.platform.sandbox import Response

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
}


class BigQueryError(Exception):
    """Raised anywhere in the sandbox; the REST layer turns it into `{"error": {...}}` or a failed job."""

    def __init__(self, status: int, reason: str, message: str, location: str | None = None):
        super().__init__(f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.location = location

    def error_proto(self) -> dict[str, Any]:
        """The ErrorProto used in `errors[]` and in a job's `status.errorResult`."""
        proto = {"reason": self.reason, "message": self.message, "domain": "global"}
        if self.location:
            proto["location"] = self.location
        return proto

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [self.error_proto()],
                "status": STATUS_NAMES.get(self.status, "UNKNOWN"),
            }
        }

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response.json(self.body(), status=self.status, headers=headers)


def invalid_query(message: str) -> BigQueryError:
    return BigQueryError(400, "invalidQuery", message, location="query")


def invalid(message: str) -> BigQueryError:
    return BigQueryError(400, "invalid", message)


def not_found(message: str) -> BigQueryError:
    return BigQueryError(404, "notFound", f"Not found: {message}")


def table_not_found(project: str, dataset: str, table: str, location: str) -> BigQueryError:
    return not_found(f"Table {project}:{dataset}.{table} was not found in location {location}")


def dataset_not_found(project: str, dataset: str, location: str) -> BigQueryError:
    return not_found(f"Dataset {project}:{dataset} was not found in location {location}")


def bytes_billed_limit_exceeded(limit: int, required: int) -> BigQueryError:
    # BigQuery's own wording; the status only matters for jobs.query, a job carries it as errorResult.
    return BigQueryError(
        400,
        "bytesBilledLimitExceeded",
        f"Query exceeded limit for bytes billed: {limit}. {required} or higher required.",
    )


def missing_credentials() -> BigQueryError:
    return BigQueryError(
        401,
        "required",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
        location="Authorization",
    )


def invalid_credentials() -> BigQueryError:
    return BigQueryError(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        location="Authorization",
    )


def rate_limit_exceeded() -> BigQueryError:
    return BigQueryError(
        429,
        "rateLimitExceeded",
        "Exceeded rate limits: too many api requests per user per method for this user_method.",
    )
