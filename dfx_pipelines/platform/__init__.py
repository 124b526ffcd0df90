"""What every connector shares (vault, registry, metric store, HTTP, redaction, sandbox harness) and nothing connector-specific."""
