"""Tests of the BigQuery sandbox, through the real google-cloud-bigquery client."""
