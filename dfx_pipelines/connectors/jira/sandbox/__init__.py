"""A local Jira (Cloud and Data Center) for tests and demos: generated site, JQL, REST API, OAuth 3LO."""
