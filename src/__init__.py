"""infraudit-webhooks: signed webhook delivery for InfraAudit events, built on Temporal."""

__version__ = "0.1.0"
