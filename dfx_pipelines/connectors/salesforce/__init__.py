"""Salesforce connector: OAuth 2.0 + PKCE, selected objects only, sales metrics, CDC sync, designated-field write-back."""
