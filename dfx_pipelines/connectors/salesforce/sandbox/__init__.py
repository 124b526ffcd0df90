"""A faithful local Salesforce: OAuth, REST v59+, a SOQL subset over a seeded org, CDC endpoints, write audit."""
