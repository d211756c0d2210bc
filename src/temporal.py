"""Connecting to Temporal and preparing its namespace for the engine.

Everyone who talks to our workflows in Python connects through :func:`connect`, so every
client uses the pydantic data converter that our contract models need.

A process that answers requests (the API) connects with ``bounded=True``. Out of the box a
client retries a refused call for about 10 s, gives a hung server 30 s to finish a connect and
sets no deadline on a call at all, which turned an outage into a slow 500. A bounded client
gives up after ``settings.temporal_rpc_timeout`` seconds on every call, so the caller gets a
quick 503 it can retry (:func:`is_outage` tells such failures apart).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

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
from temporalio.client import (
    CancelWorkflowInput,
    Client,
    CountWorkflowsInput,
    DescribeWorkflowInput,
    FetchWorkflowHistoryEventsInput,
    Interceptor,
    ListWorkflowsInput,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartWorkflowInput,
    TerminateWorkflowInput,
    WorkflowExecutionAsyncIterator,
    WorkflowExecutionCount,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowHistoryEventAsyncIterator,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from infraudit import search_attributes, tracing
from infraudit.config import Settings

log = logging.getLogger(__name__)


#: RPC statuses that mean "Temporal did not answer (in time)", not "the request was wrong": a
#: refused or reset connection (UNAVAILABLE), a call past its deadline (DEADLINE_EXCEEDED from the
#: server, CANCELLED "Timeout expired" from the client's own deadline), an overloaded server
#: (RESOURCE_EXHAUSTED).
OUTAGE_STATUSES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


#: What :func:`connect` raises when it cannot connect: ``RuntimeError`` when the server refuses
#: or drops the connection, ``TimeoutError`` when a bounded connect runs out of time.
CONNECT_ERRORS = (RuntimeError, TimeoutError, RPCError)


def is_outage(err: BaseException) -> bool:
    """Whether a call's ``err`` means Temporal is down, hung or busy (not a wrong request)."""
    return isinstance(err, RPCError) and err.status in OUTAGE_STATUSES


async def connect(settings: Settings, *, bounded: bool = False) -> Client:
    """A client for the configured server and namespace, with our data converter.

    ``bounded``: connecting, and every call but a result wait, give up after
    ``settings.temporal_rpc_timeout`` seconds (see the module docstring). Result waits are long
    polls that legitimately outlast it; whoever waits bounds them (``asyncio.timeout``).
    Workers connect unbounded: their calls run in activities that Temporal retries anyway.
    With tracing on, the client (and every worker built on it) carries the tracing interceptor
    (:func:`infraudit.tracing.temporal_interceptors`), outermost, so its spans time whole calls.
    """
    traced = tracing.temporal_interceptors(settings)
    if not bounded:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            interceptors=traced,
        )
    deadline = timedelta(seconds=settings.temporal_rpc_timeout)
    # The connect's own first call has a 30 s deadline of the SDK's; asyncio bounds it.
    async with asyncio.timeout(settings.temporal_rpc_timeout):
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            interceptors=[*traced, _Deadlines(deadline)],
            # Retries of a refused call stop when the deadline is spent (the default: 10 s).
            retry_config=RetryConfig(
                max_elapsed_time_millis=int(settings.temporal_rpc_timeout * 1000)
            ),
            connect_timeout=deadline,
        )


class _Deadlines(Interceptor):
    """Gives every workflow call without its own ``rpc_timeout`` the bounded client's deadline."""

    def __init__(self, deadline: timedelta) -> None:
        self.deadline = deadline

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _DeadlineCalls(next, self.deadline)


class _DeadlineCalls(OutboundInterceptor):
    """The calls a client of our workflows makes, each with a deadline (long polls excepted)."""

    def __init__(self, next: OutboundInterceptor, deadline: timedelta) -> None:
        super().__init__(next)
        self.deadline = deadline

    def _bound(self, given: timedelta | None) -> timedelta:
        return given if given is not None else self.deadline

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        return await super().start_workflow(input)

    async def cancel_workflow(self, input: CancelWorkflowInput) -> None:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        await super().cancel_workflow(input)

    async def describe_workflow(self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        return await super().describe_workflow(input)

    def fetch_workflow_history_events(
        self, input: FetchWorkflowHistoryEventsInput
    ) -> WorkflowHistoryEventAsyncIterator:
        if not input.wait_new_event:
            input.rpc_timeout = self._bound(input.rpc_timeout)
        return super().fetch_workflow_history_events(input)

    def list_workflows(self, input: ListWorkflowsInput) -> WorkflowExecutionAsyncIterator:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        return super().list_workflows(input)

    async def count_workflows(self, input: CountWorkflowsInput) -> WorkflowExecutionCount:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        return await super().count_workflows(input)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        return await super().query_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        await super().signal_workflow(input)

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        input.rpc_timeout = self._bound(input.rpc_timeout)
        await super().terminate_workflow(input)


async def check_health(client: Client, settings: Settings) -> None:
    """Raise unless Temporal's frontend answers healthy within the API's deadline."""
    deadline = timedelta(seconds=settings.temporal_rpc_timeout)
    if not await client.service_client.check_health(timeout=deadline):
        raise RuntimeError("Temporal's workflow service is not serving")


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
        try:
            await service.register_namespace(
                RegisterNamespaceRequest(
                    namespace=namespace, workflow_execution_retention_period=retention
                )
            )
        except RPCError as race:
            # Another worker starting at the same moment registered it first: that is done.
            if race.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            return
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
