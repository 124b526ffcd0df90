"""Jira connector: Cloud OAuth 2.0 or Data Center tokens, read-only, discovered custom fields, agile metrics."""
