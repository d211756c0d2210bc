"""One router per resource, as in the FastAPI full-stack template's ``api/routes/``.

``/v1`` routers need the caller's API key (``app.py`` adds the check to each); ``health`` and
the Settings page (``settings_page``, signed in by cookie instead) do not.
"""

from __future__ import annotations

from infraudit.api.routes import deliveries, events, health, settings_page, webhooks

#: The routers of the JSON API under ``/v1``.
V1_ROUTERS = (webhooks.router, deliveries.router, events.router)

__all__ = ["V1_ROUTERS", "health", "settings_page"]
