"""DeliverWebhook against the real dev server and real receivers on 127.0.0.1."""

from __future__ import annotations

import json
import logging

import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowFailureError

from infraudit import search_attributes, signing
from infraudit.config import Settings
from infraudit.contract import MEMO_PAYLOAD, MEMO_RESULT, DeliveryOutcome
from infraudit.store import webhooks
from tests.conftest import Endpoints
from tests.helpers import history_text, start_test_delivery
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.usefixtures("worker")


async def test_200_is_one_signed_post_recorded_delivered(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    webhook_id, secret = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    outcome: DeliveryOutcome = await handle.result()

    assert outcome.status == "delivered"
    assert [a.attempt for a in outcome.attempts] == [1]
    assert outcome.attempts[0].response_status == 200
    assert outcome.attempts[0].response_body == "ok"
    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert signing.verify_signature(request.body, secret, headers["x-infraaudit-signature"])
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("InfraAudit-Webhooks/")
    assert headers["x-infraaudit-event"] == "drift.detected"
    assert headers["x-infraaudit-delivery"] == handle.id
    assert headers["x-infraaudit-webhook"] == webhook_id
    envelope = json.loads(request.body)
    assert list(envelope) == ["event", "timestamp", "webhook_id", "delivery_id", "data"]
    assert envelope["event"] == "drift.detected"
    assert envelope["webhook_id"] == webhook_id
    assert envelope["delivery_id"] == handle.id
    assert envelope["timestamp"].endswith("Z")
    assert envelope["data"] == {"resource": "sg-0123", "severity": "high"}
    assert request.body == signing.envelope_body(envelope), "body is compact JSON"

    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.DELIVERY_STATUS) == (
        "delivered"
    )
    assert description.typed_search_attributes.get(search_attributes.WEBHOOK_ID) == webhook_id
    assert description.typed_search_attributes.get(search_attributes.ORG_ID) == org_id
    assert await description.static_summary() == f"drift.detected → {receiver.url}"
    memo = await description.memo()
    assert memo[MEMO_PAYLOAD] == envelope
    assert memo[MEMO_RESULT]["status"] == "delivered"
    assert memo[MEMO_RESULT]["attempt_count"] == 1
    assert memo[MEMO_RESULT]["response_status"] == 200


async def test_500_500_200_is_delivered_on_attempt_3_with_every_attempt_recorded(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(500, b"boom 1"), Answer(500, b"boom 2"), Answer(200, b"fine"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    outcome: DeliveryOutcome = await handle.result()

    assert outcome.status == "delivered"
    assert [(a.attempt, a.response_status, a.response_body) for a in outcome.attempts] == [
        (1, 500, "boom 1"),
        (2, 500, "boom 2"),
        (3, 200, "fine"),
    ]
    assert all(0 <= a.duration_ms < 1000 * settings.http_timeout for a in outcome.attempts)
    assert outcome.attempts[0].started_at < outcome.attempts[2].started_at
    bodies = {r.body for r in receiver.requests}
    signatures = {r.headers["X-InfraAudit-Signature"] for r in receiver.requests}
    assert len(receiver.requests) == 3
    assert len(bodies) == 1 and len(signatures) == 1, "every attempt sends the same bytes"


async def test_always_503_fails_after_exactly_3_attempts(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(503, b"unavailable"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert failure.value.cause.message == "3 attempts failed; last: HTTP 503"
    assert len(receiver.requests) == 3
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED
    assert description.typed_search_attributes.get(search_attributes.DELIVERY_STATUS) == "failed"
    result = (await description.memo())[MEMO_RESULT]
    assert result["status"] == "failed"
    assert result["attempt_count"] == 3
    assert result["response_status"] == 503
    assert result["response_body"] == "unavailable"
    assert result["error"] == "3 attempts failed; last: HTTP 503"


async def test_receiver_slower_than_the_timeout_is_a_failed_attempt(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(200, delay=settings.http_timeout + 1.0), Answer(200))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    outcome: DeliveryOutcome = await handle.result()

    first, second = outcome.attempts
    assert first.response_status is None
    assert first.error == f"timed out after {settings.http_timeout:g}s"
    assert first.duration_ms < (settings.http_timeout + 0.9) * 1000
    assert second.response_status == 200
    assert outcome.status == "delivered"


async def test_unreachable_endpoint_fails_with_connection_errors(
    client: Client, settings: Settings, endpoints: Endpoints, org_id: str
) -> None:
    with_no_listener = "http://127.0.0.1:9/hook"
    webhook_id, _ = await endpoints.add(org_id, with_no_listener)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=with_no_listener
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert failure.value.cause.message.startswith("3 attempts failed; last: ConnectError")


async def test_response_body_is_capped(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(200, b"x" * (settings.response_body_limit * 4)))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    outcome: DeliveryOutcome = await handle.result()
    assert outcome.attempts[0].response_body == "x" * settings.response_body_limit


async def test_disabled_endpoint_ends_the_delivery_without_further_attempts(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    webhook_id, _ = await endpoints.add(org_id, receiver.url, enabled=False)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert failure.value.cause.message == f"endpoint {webhook_id} was disabled; no further attempts"
    assert receiver.requests == []
    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.DELIVERY_STATUS) == "failed"


async def test_endpoint_deleted_between_attempts_stops_the_retries(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
) -> None:
    receiver.script(Answer(500, b"down"))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    slow = settings.model_copy(update={"retry_initial_interval": 2.0})
    handle = await start_test_delivery(
        client, slow, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    await receiver.wait_for(1)
    async with endpoints.db.session() as session, session.begin():
        hook = await webhooks.get_webhook(session, org_id, webhook_id)
        assert hook is not None
        await webhooks.delete_webhook(session, hook)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert failure.value.cause.message == f"endpoint {webhook_id} was deleted; no further attempts"
    assert len(receiver.requests) == 1


async def test_secret_never_appears_in_history(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(500), Answer(200))
    webhook_id, secret = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    await handle.result()
    raw = history_text(await handle.fetch_history())
    assert webhook_id in raw, "the history is the one we think it is"
    assert secret not in raw
    assert secret.removeprefix("whsec_") not in raw
    description = await handle.describe()
    assert secret not in json.dumps(await description.memo())
    assert secret not in repr(description.typed_search_attributes)


async def test_secret_never_appears_in_logs(
    client: Client,
    settings: Settings,
    endpoints: Endpoints,
    receiver: Receiver,
    org_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script(Answer(500, b"nope"), Answer(200))
    webhook_id, secret = await endpoints.add(org_id, receiver.url)
    with caplog.at_level(logging.DEBUG):
        handle = await start_test_delivery(
            client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
        )
        await handle.result()
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records)
    assert "HTTP 500" in logged, "the failed attempt was logged, so logs were captured"
    assert secret not in logged


async def test_redirects_are_not_followed_but_count_as_failed_attempts(
    client: Client, settings: Settings, endpoints: Endpoints, receiver: Receiver, org_id: str
) -> None:
    receiver.script(Answer(301, b"moved"), Answer(204, b""))
    webhook_id, _ = await endpoints.add(org_id, receiver.url)
    handle = await start_test_delivery(
        client, settings, org_id=org_id, webhook_id=webhook_id, url=receiver.url
    )
    outcome: DeliveryOutcome = await handle.result()
    assert [(a.response_status, a.response_body) for a in outcome.attempts] == [
        (301, "moved"),
        (204, ""),
    ]
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]
