"""Connecting a BigQuery project: the uploaded service-account key validated and encrypted straight
into the vault, the selection and metric specs checked against the live dataset/table metadata, and
the connection registered — all or nothing.

The key's plaintext exists only in this process's memory: it is read from the upload, parsed, used to
build in-memory credentials for the metadata checks, and handed to the vault (AES-256-GCM) together
with the registry row. No temp file, no environment variable, nothing logged (its text is registered
as a secret the moment it is read, so even an accidental log line is masked).
"""

from __future__ import annotations

import json
from typing import Any

from dfx_pipelines.connectors.bigquery.credentials import build_client, check_api_endpoint, parse_service_account_key
from dfx_pipelines.connectors.bigquery.metrics import TableInfo, parse_specs, spec_problems
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform.errors import AuthError, ConfigError, ConnectorError
from dfx_pipelines.platform.redaction import redact
from dfx_pipelines.platform.registry import Connection, parse_connection
from dfx_pipelines.platform.services import Platform

KIND = "bigquery"
DEFAULT_LOCATION = "US"
# Connecting is interactive: each metadata call (with the token request it may make) gets 5 s, and all
# of a call's retries together 12 s, so `dfx connect bigquery` answers within 30 s even when Google (or
# whatever the key's token_uri names) accepts connections and never replies. google-cloud-bigquery's
# own default would keep retrying for 600 s.
CALL_TIMEOUT_S = 5.0
CALL_DEADLINE_S = 12.0


def _hosts(info: dict[str, str], api_endpoint: str | None) -> str:
    import urllib.parse

    def host(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.hostname}:{parts.port or 443}"

    api = host(api_endpoint or "https://bigquery.googleapis.com")
    token = host(info["token_uri"])
    return api if api == token else f"{api} (API) or {token} (token endpoint)"


def _tags(schema_field: Any) -> list[str]:
    own = list(schema_field.policy_tags.names) if schema_field.policy_tags else []
    return sorted(set(own + [t for sub in schema_field.fields or () for t in _tags(sub)]))


def describe_selection(
    client: Any,
    project: str,
    selection: BigQuerySelection,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[list[str], dict[str, TableInfo], dict[str, Any]]:
    """(problems, table infos, `discovered` metadata) for a selection, from datasets.get/tables.get only
    (metadata calls: no query job, nothing billed). `timeout` bounds each call, `deadline` its retries."""
    from google.api_core import exceptions
    from google.cloud import bigquery

    bounded: dict[str, Any] = {}
    if timeout is not None:
        bounded["timeout"] = timeout
    if deadline is not None:
        bounded["retry"] = bigquery.DEFAULT_RETRY.with_deadline(deadline)

    problems: list[str] = []
    infos: dict[str, TableInfo] = {}
    discovered: dict[str, Any] = {}
    if not selection.datasets:
        return ["a BigQuery connection needs at least one selected dataset and table"], infos, discovered
    for dataset, tables in sorted(selection.datasets.items()):
        if not tables:
            problems.append(f"dataset {dataset} selects no tables (list the tables and views to share)")
            continue
        try:
            client.get_dataset(bigquery.DatasetReference(project, dataset), **bounded)
        except exceptions.NotFound:
            problems.append(f"dataset {dataset} does not exist in project {project}")
            continue
        except exceptions.Forbidden:
            problems.append(f"the service account may not read dataset {dataset} (grant BigQuery Data Viewer on it)")
            continue
        for name in tables:
            key = f"{dataset}.{name}"
            try:
                table = client.get_table(
                    bigquery.TableReference(bigquery.DatasetReference(project, dataset), name), **bounded
                )
            except exceptions.NotFound:
                problems.append(f"table {key} does not exist")
                continue
            except exceptions.Forbidden:
                problems.append(f"the service account may not read table {key}")
                continue
            columns = {f.name: f.field_type for f in table.schema}
            tagged = {f.name: tags for f in table.schema if (tags := _tags(f))}
            partition = table.time_partitioning.field if table.time_partitioning is not None else None
            infos[key] = TableInfo(columns, partition, tagged)
            discovered[key] = {
                "type": table.table_type,
                "partition_field": partition,
                "columns": columns,
                "policy_tagged": tagged,
            }
    for key, narrowed in sorted(selection.objects.items()):
        dataset, _, name = key.partition(".")
        if name not in selection.datasets.get(dataset, []):
            problems.append(f"columns are narrowed for {key}, which is not a selected table")
        elif key in infos:
            known = {c.lower() for c in infos[key].columns}
            problems += [f"column {key}.{c} does not exist" for c in narrowed if c.lower() not in known]
    return problems, infos, discovered


def connect_bigquery(
    platform: Platform,
    *,
    config: dict[str, Any],
    key: str | bytes,
    sandbox_ca: str | None = None,
    replace_key: bool = False,
) -> Connection:
    """Validate the key, check the selection and specs against BigQuery's metadata, then store the
    key (encrypted) and the connection together. `config` is a connection dict; its `endpoint` may
    carry `project` (default: the key's), `location`, `metric_specs`, `granted_policy_tags` and, in
    sandbox mode only, `api_endpoint`."""
    sandbox_allowed = platform.settings.sandbox_allowed
    info = parse_service_account_key(key, sandbox_allowed=sandbox_allowed)  # before anything else
    endpoint = dict(config.get("endpoint") or {})
    endpoint.setdefault("project", info["project_id"])
    endpoint.setdefault("location", DEFAULT_LOCATION)
    endpoint["api_endpoint"] = check_api_endpoint(endpoint.get("api_endpoint"), sandbox_allowed=sandbox_allowed)
    if endpoint["api_endpoint"] is None:
        endpoint.pop("api_endpoint")
    granted = endpoint.setdefault("granted_policy_tags", [])
    if not isinstance(granted, list) or not all(isinstance(t, str) and t.startswith("projects/") for t in granted):
        raise ConfigError("granted_policy_tags must be a list of policy tag resource names (projects/…/policyTags/…)")
    specs = parse_specs(endpoint.get("metric_specs", []))
    endpoint["metric_specs"] = [spec.model_dump(mode="json") for spec in specs]
    connection = parse_connection({**config, "kind": KIND, "endpoint": endpoint})  # every identifier checked here
    existing = platform.registry.find(connection.id)
    if existing is not None and not (replace_key and existing.is_active and existing.kind == KIND):
        raise ConfigError(
            f"connection {connection.id!r} already exists"
            + ("" if existing.is_active else f" and is {existing.status.value}")
        )
    # A connection without a monthly budget may be set up; the gate then runs nothing until one is set.
    client, _session = build_client(
        info,
        project=endpoint["project"],
        location=endpoint["location"],
        api_endpoint=endpoint.get("api_endpoint"),
        sandbox_ca=sandbox_ca,
    )
    try:
        import requests
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            problems, infos, discovered = describe_selection(
                client,
                endpoint["project"],
                connection.selection.narrowed(BigQuerySelection),
                timeout=CALL_TIMEOUT_S,
                deadline=CALL_DEADLINE_S,
            )
        except (auth_exceptions.TransportError, exceptions.RetryError, requests.RequestException):
            where = _hosts(info, endpoint.get("api_endpoint"))
            raise ConnectorError(
                f"BigQuery could not be reached: no answer from {where} within {CALL_DEADLINE_S:g} s"
            ) from None
        except auth_exceptions.GoogleAuthError as exc:
            raise AuthError(f"the service-account key was refused: {redact(str(exc))[:300]}") from None
        except exceptions.GoogleAPICallError as exc:
            raise ConnectorError(f"reading BigQuery metadata failed: {redact(str(exc))[:300]}") from None
        for spec in specs:
            problems += spec_problems(spec, connection.selection.narrowed(BigQuerySelection), infos, granted)
        if problems:
            raise ConfigError("the selection does not match this BigQuery project: " + "; ".join(problems))
    finally:
        client.close()
    connection.discovered = {**connection.discovered, "tables": discovered}
    secret = json.dumps(info, separators=(",", ":"))
    if existing is not None:
        connection.created_at = existing.created_at
        platform.vault.put(connection.secret_ref("service_account_key"), secret)
        return platform.registry.save(connection)
    return platform.registry.add_connection(connection, vault=platform.vault, secrets={"service_account_key": secret})
