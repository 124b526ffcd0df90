"""Resource fields that may hold a Dagster `EnvVar`, resolved for code that reads a resource outside a run.

Inside a run, or a sensor or schedule that is given the resource, Dagster resolves `EnvVar` fields before
our code sees them. A resource built by a CLI command or a helper and read directly is never processed:
its field still holds the `EnvVar` itself, a `str` subclass whose text is the variable's *name*. An
`isinstance(value, str)` check passes it, and it would be sent as if it were the secret (a Salesforce code
exchange then fails with `invalid_client`). Every read of such a field goes through `resolved`.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._config.field_utils import IntEnvVar


def resolved(value: Any) -> Any:
    """The variable's value for an `EnvVar` (None when unset or empty), the value itself otherwise."""
    if isinstance(value, (dg.EnvVar, IntEnvVar)):
        found = value.get_value()
        return None if found in (None, "") else found
    return value
