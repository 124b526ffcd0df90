"""A local BigQuery: the REST v2 API the real client speaks, GoogleSQL run by DuckDB, and on-demand pricing."""
