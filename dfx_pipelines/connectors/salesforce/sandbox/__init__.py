"""A faithful local Salesforce: OAuth, REST v59+, a SOQL subset over a seeded org, CDC endpoints, write audit.

Start one with `start_salesforce_sandbox(SalesforceOrg(...))`; see `launch` for driving OAuth and `app` for
the endpoints. Importing this package does no I/O.
"""

from .app import SalesforceSandbox, WriteAudit
from .errors import SalesforceApiError
from .launch import RunningSalesforceSandbox, complete_authorization, parse_redirect, start_salesforce_sandbox
from .oauth import pkce_challenge
from .org import MutationSummary, SalesforceOrg

__all__ = [
    "MutationSummary",
    "RunningSalesforceSandbox",
    "SalesforceApiError",
    "SalesforceOrg",
    "SalesforceSandbox",
    "WriteAudit",
    "complete_authorization",
    "parse_redirect",
    "pkce_challenge",
    "start_salesforce_sandbox",
]
