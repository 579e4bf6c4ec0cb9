"""Names users choose and names Trace derives: the rules for the first, the functions for the second.

Physical names never contain a user-chosen name: Postgres tables are derived from the dataset uuid and the
dataset version, so renaming or re-publishing a dataset never moves data.
"""

from __future__ import annotations

import base64
import re
from uuid import UUID

DAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
JOB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
POOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
ORG_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

# Schema that holds the physical tables of Postgres datasets, apart from the platform's own tables.
DATA_SCHEMA = "trace_data"


def _b32(value: UUID) -> str:
    return base64.b32encode(value.bytes).decode().rstrip("=").lower()


def dataset_table_name(dataset_uuid: UUID, dataset_version: UUID) -> str:
    """The table (in `DATA_SCHEMA`) of one version of a Postgres dataset: 56 characters, under the 63 limit."""
    return f"ds_{_b32(dataset_uuid)}_{_b32(dataset_version)}"


# Columns Trace adds to every Postgres dataset table (the scope a row was written for, the task that wrote it).
# Readers never see them: the Query Service's catalog leaves out every column with this prefix.
SYSTEM_COLUMN_PREFIX = "_trace_"
SCOPE_COLUMN = "_trace_scope"
TASK_COLUMN = "_trace_task_id"
