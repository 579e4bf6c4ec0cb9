"""Where dataset data and query results live in the object store (SPEC §5).

Parquet of one dataset version lives under
`{root}/org/{org_id}/dataset/{dataset_uuid}/version/{dataset_version}/`, one file per written scope, with
block ranges keeping `{start}_{end}` in the file name. A batch query's result lives beside, never inside, the
datasets: `{root}/org/{org_id}/query/{query_id}/attempt-{n}.parquet`.
"""

from __future__ import annotations

import hashlib
import re
from uuid import UUID

from trace_core.contracts.events import EventScope

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def dataset_version_prefix(org_id: UUID, dataset_uuid: UUID, dataset_version: UUID) -> str:
    """The key prefix (no root, no trailing slash) of one dataset version."""
    return f"org/{org_id}/dataset/{dataset_uuid}/version/{dataset_version}"


def range_file_key(org_id: UUID, dataset_uuid: UUID, dataset_version: UUID, start: int, end: int) -> str:
    """The key of the Parquet file holding blocks `start..end` (inclusive) of a dataset version."""
    if start < 0 or end < start:
        raise ValueError(f"a block range needs 0 <= start <= end, got {start}..{end}")
    return f"{dataset_version_prefix(org_id, dataset_uuid, dataset_version)}/{start}_{end}.parquet"


def part_file_key(org_id: UUID, dataset_uuid: UUID, dataset_version: UUID, part: str) -> str:
    """The key of a Parquet file for a scope that is not a block range (a partition key or a cursor)."""
    if not _SAFE_PART.match(part) or part in {".", ".."}:
        raise ValueError(f"a file part must match {_SAFE_PART.pattern}, got {part!r}")
    return f"{dataset_version_prefix(org_id, dataset_uuid, dataset_version)}/{part}.parquet"


def query_result_prefix(org_id: UUID, query_id: UUID) -> str:
    """The key prefix (no root, no trailing slash) of one batch query's results: outside every dataset's."""
    return f"org/{org_id}/query/{query_id}"


def query_result_key(org_id: UUID, query_id: UUID, attempt_number: int) -> str:
    """The key of the Parquet result a batch query's attempt wrote: each attempt its own file, so the query's row
    always names a whole file that matches its row count, even while a retry writes the next one."""
    if attempt_number < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt_number}")
    return f"{query_result_prefix(org_id, query_id)}/attempt-{attempt_number}.parquet"


def join_root(root: str, key: str) -> str:
    """`root` (`s3://bucket/prefix` or a local directory) joined with an object key."""
    return f"{root.rstrip('/')}/{key.lstrip('/')}"


def location_file_key(location: str, scope: EventScope) -> str:
    """The one Parquet file a scope's rows live in, under a version's storage location: `{start}_{end}` for a
    range, the partition key when it is a safe file name, else a digest of the scope. Readers and writers use the
    location the registry records: a version deployed with ?rematerialize=none continues the location of the
    version it replaces."""
    if scope.range is not None:
        if scope.range.start < 0 or scope.range.end < scope.range.start:
            raise ValueError(f"a block range needs 0 <= start <= end, got {scope.range.start}..{scope.range.end}")
        return f"{location}/{scope.range.start}_{scope.range.end}.parquet"
    part = scope.partition_key
    if part is None or not _SAFE_PART.match(part) or part in {".", ".."}:
        part = "scope-" + hashlib.sha256(scope.key.encode()).hexdigest()[:32]
    return f"{location}/{part}.parquet"
