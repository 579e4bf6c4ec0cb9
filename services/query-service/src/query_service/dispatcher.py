"""The dispatcher's internal batch-query calls, as the Query Service makes them (service credential).

The dispatcher owns tasks: it pins a batch query's datasets and queues its task in one transaction. Its refusals
come back as the Query Service's own errors, so a batch query is answered like an interactive one.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel

from trace_core.contracts.queries import BatchQueryCancelResponse, BatchQueryRequest, BatchQueryResponse, QueryCaller
from trace_core.query import DatasetNotFoundError, QueryError


class DispatcherUnavailableError(QueryError):
    """The dispatcher did not answer, or failed: the batch query was not queued (or not canceled)."""

    status_code = 503


class QueryNotFoundError(QueryError):
    """No query of this id that the caller may see: a missing and another user's query look alike."""

    status_code = 404


class QueryConflictError(QueryError):
    """The query is not in a state that allows the call (an interactive query's result, a finished query's cancel)."""

    status_code = 409


class DispatcherClient:
    def __init__(self, base_url: str, service_token: str, timeout_s: float = 30) -> None:
        self._url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {service_token}"}, timeout=timeout_s
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def submit(self, call: BatchQueryRequest) -> BatchQueryResponse:
        """Pin and queue; `DatasetNotFoundError` for a dataset the caller may not read (nothing is recorded)."""
        return BatchQueryResponse.model_validate(await self._post("/internal/batch-queries", call))

    async def cancel(self, query_id: UUID, caller: QueryCaller) -> BatchQueryCancelResponse:
        body = await self._post(f"/internal/batch-queries/{query_id}/cancel", caller)
        return BatchQueryCancelResponse.model_validate(body)

    async def _post(self, path: str, body: BaseModel) -> Any:
        try:
            response = await self._http.post(
                path, content=body.model_dump_json(), headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as error:
            raise DispatcherUnavailableError(
                f"the dispatcher at {self._url} did not answer ({error}); try again"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {"detail": response.text}
        if response.status_code < 400:
            return answer
        detail = str(answer.get("detail", ""))
        dataset = (answer.get("extra") or {}).get("dataset") if isinstance(answer.get("extra"), dict) else None
        if response.status_code == 404:
            raise DatasetNotFoundError(str(dataset)) if dataset is not None else QueryNotFoundError(detail)
        if response.status_code == 409:
            raise QueryConflictError(detail)
        raise DispatcherUnavailableError(f"the dispatcher answered {response.status_code}: {detail}")
