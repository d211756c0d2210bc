"""The worker's start-up preparation of a namespace, on the real dev server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from infraudit import search_attributes, temporal
from infraudit.config import Settings


async def test_prepare_creates_the_namespace_with_retention_and_search_attributes(
    client: Client, database_url: str
) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=database_url, temporal_namespace=namespace, retention_days=30)
    await temporal.prepare(client, settings)
    await temporal.prepare(client, settings.model_copy(update={"retention_days": 45}))

    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    assert retention == timedelta(days=45)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {key.name for key in search_attributes.ALL} <= set(listed.custom_attributes)


async def test_workers_starting_together_both_prepare_a_new_namespace(client: Client) -> None:
    """Replicas start at once (compose, a deploy): the one that registers second must not fail."""
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(*(temporal.ensure_namespace(client, namespace, 30) for _ in range(4)))
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    assert described.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(days=30)
