"""Connecting to Temporal and preparing its namespace for the engine.

Everyone who talks to our workflows in Python connects through :func:`connect`, so every
client uses the pydantic data converter that our contract models need.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from infraudit import search_attributes
from infraudit.config import Settings

log = logging.getLogger(__name__)


async def connect(settings: Settings) -> Client:
    """A client for the configured server and namespace, with our data converter."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def ensure_namespace(client: Client, namespace: str, retention_days: int) -> None:
    """Make sure the namespace exists and keeps closed workflows ``retention_days`` days.

    The delivery log is Temporal's visibility over closed workflows: a shorter retention would
    silently shorten the log customers see.
    """
    retention = Duration()
    retention.FromTimedelta(timedelta(days=retention_days))
    service = client.workflow_service
    try:
        described = await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace, workflow_execution_retention_period=retention
            )
        )
        log.info("registered namespace %s with %d days retention", namespace, retention_days)
        return
    current = described.config.workflow_execution_retention_ttl.ToTimedelta()
    if current != timedelta(days=retention_days):
        await service.update_namespace(
            UpdateNamespaceRequest(
                namespace=namespace,
                config=NamespaceConfig(workflow_execution_retention_ttl=retention),
            )
        )
        log.info("set namespace %s retention to %d days", namespace, retention_days)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the delivery search attributes that the namespace lacks.

    Temporal's time-skipping test server cannot list search attributes but can add them.
    """
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search_attributes.ALL
        if key.name not in existing
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    log.info("registered search attributes %s", ", ".join(missing))


async def prepare(client: Client, settings: Settings, *, within: float = 60.0) -> None:
    """Namespace and search attributes, as the delivery log needs them.

    A namespace registered a moment ago is unknown to the server's other services until its
    namespace cache refreshes (seconds), so the search attributes are retried until then.
    """
    await ensure_namespace(client, settings.temporal_namespace, settings.retention_days)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await ensure_search_attributes(client, settings.temporal_namespace)
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.5)
