"""The privacy lifecycle as jobs: revocation, provable deletion, retention rules, data-subject requests, sync-error notifications."""
