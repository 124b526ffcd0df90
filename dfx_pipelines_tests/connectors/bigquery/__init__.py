"""Tests of the BigQuery connector."""
