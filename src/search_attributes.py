"""The custom search attributes every delivery carries; the delivery log queries them.

All are Keyword: visibility values are stored in plain text, so none of them ever holds a
secret or a payload.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

WEBHOOK_ID = SearchAttributeKey.for_keyword("WebhookId")
ORG_ID = SearchAttributeKey.for_keyword("OrgId")
EVENT_TYPE = SearchAttributeKey.for_keyword("EventType")
DELIVERY_STATUS = SearchAttributeKey.for_keyword("DeliveryStatus")

ALL = (WEBHOOK_ID, ORG_ID, EVENT_TYPE, DELIVERY_STATUS)
