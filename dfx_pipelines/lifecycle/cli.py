"""`dfx requests ...`: record a data-subject request, record identity verification, list what is open
(with due dates), and answer a request from the shell — the same code the Dagster jobs run.

Register with `main.add_command(requests_group)` in `dfx_pipelines/cli.py`. Output never shows an
exported document or other personal data beyond the subject's email the operator typed.
"""

import json

import click

from dfx_pipelines.lifecycle import subject_data


def _platform():
    from dfx_pipelines.platform.services import get_platform

    return get_platform()


@click.group("requests")
def requests_group() -> None:
    """Data-subject requests (GDPR 30 days, CCPA 45 days)."""


@requests_group.command("record")
@click.option("--kind", type=click.Choice(subject_data.KINDS), required=True)
@click.option("--law", type=click.Choice(sorted(subject_data.DUE_DAYS)), required=True)
@click.option("--email", required=True, help="The data subject's email address.")
@click.option("--corrections", default=None, help='Rectification only: JSON {"category": {"column": "value"}}.')
def record(kind: str, law: str, email: str, corrections: str | None) -> None:
    """Record a request as received; prints its id and due date."""
    details = {"corrections": json.loads(corrections)} if corrections else {}
    request = subject_data.record_request(_platform().engine, kind, law, email, request=details)
    click.echo(
        f"request {request.id}: {kind} ({law.upper()}) received {request.received_at:%Y-%m-%d}, due {request.due_at:%Y-%m-%d}; verify the requester's identity next"
    )


@requests_group.command("verify")
@click.argument("request_id", type=int)
@click.option("--by", required=True, help="Who verified the requester's identity.")
def verify(request_id: int, by: str) -> None:
    """Record that the requester's identity was verified (required before any action)."""
    request = subject_data.verify_identity(_platform().engine, request_id, by)
    click.echo(
        f"request {request.id}: identity verified by {request.identity_verified_by} at {request.identity_verified_at:%Y-%m-%d %H:%M} UTC"
    )


@requests_group.command("list")
def list_open() -> None:
    """Open requests, soonest due first."""
    overdue, nearing = subject_data.deadline_alerts(_platform().engine)
    late, soon = {r.id for r in overdue}, {r.id for r in nearing}
    for r in subject_data.open_requests(_platform().engine):
        flag = " OVERDUE" if r.id in late else " due soon" if r.id in soon else ""
        click.echo(f"{r.id}\t{r.kind}\t{r.law.upper()}\t{r.status}\tdue {r.due_at:%Y-%m-%d}{flag}")


@requests_group.command("answer")
@click.argument("request_id", type=int)
def answer(request_id: int) -> None:
    """Act on a verified request now (as its Dagster job would) and print a summary of the answer."""
    from dfx_pipelines.lifecycle.app_data import AppDatabaseResource
    from dfx_pipelines.lifecycle.subject_requests import answer_request, response_counts

    request = subject_data.get_request(_platform().engine, request_id)
    kinds = ("restriction", "objection") if request.kind in ("restriction", "objection") else (request.kind,)
    answered = answer_request(_platform(), AppDatabaseResource(), request_id, kinds)
    click.echo(
        f"request {answered.id}: {answered.kind} answered; "
        + ", ".join(f"{k}={v}" for k, v in response_counts(answered.response or {}).items())
    )
