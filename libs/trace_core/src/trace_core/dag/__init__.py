"""The DAG config: models (`config`), the YAML loader (`loader`), the cross-field rules (`validate`) and
`diff` between two versions."""

from trace_core.dag.config import DagConfig, Job
from trace_core.dag.diff import DagDiff, diff
from trace_core.dag.errors import ConfigIssue, DagConfigError
from trace_core.dag.loader import load_dag_file, load_dag_yaml

__all__ = [
    "ConfigIssue",
    "DagConfig",
    "DagConfigError",
    "DagDiff",
    "Job",
    "diff",
    "load_dag_file",
    "load_dag_yaml",
]
