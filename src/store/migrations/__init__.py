"""Alembic migrations of the registrations schema (run by ``infraudit db upgrade``)."""
