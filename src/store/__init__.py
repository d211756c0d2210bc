"""Registrations in SQL (orgs, API keys, webhook endpoints); no Temporal, no HTTP here."""
