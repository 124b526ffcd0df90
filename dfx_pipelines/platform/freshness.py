"""How old a metric may be before Dagster reports it stale, shared by every connector's metric assets.

Metrics are computed nightly (and on changes): a value older than 36 hours means at least one nightly run
was missed. It is Dagster's first-class freshness policy (not the superseded freshness-check factories):
the instance's freshness daemon evaluates it against the asset's latest materialization, of any partition,
and the UI shows the state (PASS / FAIL, UNKNOWN before the first materialization).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

METRIC_STALE_AFTER = timedelta(hours=36)
METRIC_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=METRIC_STALE_AFTER)
