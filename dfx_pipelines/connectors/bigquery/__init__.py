"""The BigQuery connector: read-only, priced, column-selected queries against a customer's warehouse."""
