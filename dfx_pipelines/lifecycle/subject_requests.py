"""Data-subject requests as Dagster jobs (access/export, erasure, rectification, restriction/objection)
and the sensor that raises the alarm on requests nearing or past their legal due date.

Each job takes only a request id: the subject's email and corrections stay in the `subject_requests`
table, never in run config, tags, logs or event metadata. Each job refuses — failing the run with a clear
message and changing nothing — a request whose identity verification is not recorded, that was already
answered, or that belongs to another job. The answer is written to the request's `response`.

Due dates, the alerting choice: the sensor logs every request due within 7 days (warning) and every
overdue one (error). Requests only nearing their date leave a skip reason listing them in the sensor's
tick history; each overdue request launches `subject_request_overdue_alert_job` once a day, a run that
*fails* naming the request — so it is red in the UI and reaches whatever run-failure alerting the
deployment has. Logic lives in `subject_data`.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from dfx_pipelines.lifecycle import subject_data
from dfx_pipelines.lifecycle.app_data import AppDatabaseResource
from dfx_pipelines.lifecycle.retention import LIFECYCLE_TAGS
from dfx_pipelines.lifecycle.subject_data import (  # noqa: F401 - the public API, re-exported
    DUE_DAYS,
    KINDS,
    RequestRefused,
    connection_restricted,
    deadline_alerts,
    get_request,
    is_restricted,
    record_request,
    restricted_workspace_ids,
    verify_identity,
)
from dfx_pipelines.platform.registry import utcnow
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

REQUEST_TAGS = {**LIFECYCLE_TAGS, "dfx/privacy": "subject-request"}


class SubjectRequestConfig(dg.Config):
    request_id: int
    actor: str = "dagster-operator"


def answer_request(
    platform: Platform, app_db: AppDatabaseResource, request_id: int, kinds: Sequence[str]
) -> subject_data.SubjectRequest:
    """Check the request may be acted on, act, and record the answer. Raises `RequestRefused` untouched."""
    request = get_request(platform.engine, request_id)
    subject_data.check_actionable(request, kinds)
    app_tables = app_db.checked_tables()
    app_engine = app_db.engine() if app_db.resolved_url() else None
    email = request.subject_email
    if request.kind == "access":
        response: dict[str, Any] = {"document": subject_data.export_subject(platform, app_engine, app_tables, email)}
        response["found"] = response["document"]["found"]
        if not response["found"]:
            response["message"] = f"no data about {email} is held in the configured tables or the registry"
    elif request.kind == "erasure":
        response = subject_data.erase_subject(platform, app_engine, app_tables, email)
    elif request.kind == "rectification":
        response = subject_data.rectify_subject(app_engine, app_tables, email, request.request.get("corrections") or {})
    else:  # restriction, objection: processing stops
        response = subject_data.restrict_subject(platform, email, request.id, request.kind)
    return subject_data.complete(platform.engine, request.id, response)


def response_counts(response: dict[str, Any]) -> dict[str, Any]:
    """Counts only, for run metadata: the answer itself (personal data) stays in the request row."""
    meta: dict[str, Any] = {"found": bool(response.get("found", True))}
    document = response.get("document")
    if document:
        for category, section in document["application_data"].items():
            meta[f"rows.{category}"] = len(section["rows"])
        meta["workspaces"] = len(document["workspaces"])
    for category, done in (response.get("erased") or {}).items():
        meta[f"{done['action']}.{category}"] = done["rows"]
    for held in response.get("kept") or []:
        meta[f"kept.{held['category']}"] = held["rows"]
    for category, done in (response.get("rectified") or {}).items():
        meta[f"rectified.{category}"] = done["rows"]
    if "restricted" in response:
        meta["workspaces_excluded"] = len(response.get("workspaces_excluded_from_processing", []))
    return meta


def _request_job(name: str, kinds: tuple[str, ...], description: str) -> dg.JobDefinition:
    @dg.op(name=f"answer_{name}_request", tags=REQUEST_TAGS)
    def answer(
        context: dg.OpExecutionContext,
        config: SubjectRequestConfig,
        platform: PlatformResource,
        app_db: AppDatabaseResource,
    ) -> dg.Output[dict]:
        try:
            answered = answer_request(platform.get(), app_db, config.request_id, kinds)
        except RequestRefused as exc:
            context.log.error(str(exc))
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(
            f"subject request {answered.id} ({answered.kind}, {answered.law.upper()}) answered by {config.actor}"
        )
        summary: dict[str, Any] = {"request_id": answered.id, "kind": answered.kind, "status": answered.status}
        return dg.Output(summary, metadata={**summary, **response_counts(answered.response or {})})

    @dg.job(name=f"subject_{name}_job", tags=REQUEST_TAGS, description=description)
    def request_job() -> None:
        answer()

    return request_job


subject_access_job = _request_job(
    "access", ("access",), "Access/portability: one JSON document of everything held about the subject."
)
subject_erasure_job = _request_job(
    "erasure", ("erasure",), "Erasure: delete or anonymise the subject's data, keeping what a legal period requires."
)
subject_rectification_job = _request_job(
    "rectification", ("rectification",), "Rectification: apply the recorded corrections."
)
subject_restriction_job = _request_job(
    "restriction", ("restriction", "objection"), "Restriction/objection: stop processing the subject's data."
)


class OverdueAlertConfig(dg.Config):
    request_id: int


@dg.op(tags=REQUEST_TAGS)
def raise_overdue_alert(context: dg.OpExecutionContext, config: OverdueAlertConfig, platform: PlatformResource) -> None:
    request = get_request(platform.get().engine, config.request_id)
    if request.status == "completed":
        context.log.info(f"subject request {request.id} was answered meanwhile")
        return
    late = utcnow() - request.due_at
    message = (
        f"SUBJECT REQUEST OVERDUE: #{request.id} ({request.kind}, {request.law.upper()}) was due "
        f"{request.due_at:%Y-%m-%d} and is {late.days} day(s) late; status {request.status}"
    )
    context.log.error(message)
    raise dg.Failure(description=message, allow_retries=False)


@dg.job(
    tags={**REQUEST_TAGS, "dfx/alert": "subject-request-overdue"},
    description="Fails loudly for an overdue data-subject request.",
)
def subject_request_overdue_alert_job() -> None:
    raise_overdue_alert()


@dg.sensor(
    name="subject_request_deadline_sensor",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=subject_request_overdue_alert_job,
    description="Warns about data-subject requests due within 7 days; launches a failing alert run for overdue ones.",
)
def subject_request_deadline_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    overdue, nearing = deadline_alerts(platform.get().engine)
    for request in nearing:
        context.log.warning(
            f"subject request #{request.id} ({request.kind}, {request.law.upper()}) is due {request.due_at:%Y-%m-%d %H:%M} UTC"
        )
    for request in overdue:
        context.log.error(
            f"subject request #{request.id} ({request.kind}, {request.law.upper()}) is OVERDUE since {request.due_at:%Y-%m-%d %H:%M} UTC"
        )
    today = utcnow().strftime("%Y%m%d")
    runs = [
        dg.RunRequest(
            run_key=f"dsr-overdue:{r.id}:{today}",  # at most one alert run per request per day
            run_config={"ops": {"raise_overdue_alert": {"config": {"request_id": r.id}}}},
            tags={"dfx/subject-request": str(r.id)},
        )
        for r in overdue
    ]
    if runs:
        return dg.SensorResult(run_requests=runs)
    if nearing:
        return dg.SensorResult(
            skip_reason="due within 7 days: "
            + ", ".join(f"#{r.id} ({r.kind}, due {r.due_at:%Y-%m-%d})" for r in nearing)
        )
    return dg.SensorResult(skip_reason="no open data-subject request is near or past its due date")


SUBJECT_REQUEST_JOBS = [
    subject_access_job,
    subject_erasure_job,
    subject_rectification_job,
    subject_restriction_job,
    subject_request_overdue_alert_job,
]
SUBJECT_REQUEST_SENSORS = [subject_request_deadline_sensor]
