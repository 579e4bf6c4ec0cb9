"""Property: whatever text it is given, the loader returns a config or raises its own DagConfigError."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.dags import VALID_DAG
from trace_core.dag import DagConfig, DagConfigError, load_dag_yaml

KEYS = [
    "dag",
    "jobs",
    "publish",
    "worker_pools",
    "operator",
    "inputs",
    "outputs",
    "from",
    "job",
    "output",
    "dataset",
    "activation",
    "source",
    "reactive",
    "storage",
    "s3",
    "postgres",
    "unique_key",
    "config",
    "execution_strategy",
    "Bulk",
    "PerPartition",
    "update_strategy",
    "append",
    "worker_pool",
    "scaling",
    "max_concurrency",
    "timeout_s",
    "max_attempts",
    "runtime",
    "env",
    "secret_env",
    "write_mode",
    "<<",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.sampled_from(KEYS),
    st.text(max_size=12),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5),
    ),
    max_leaves=40,
)


def check(text: str) -> None:
    """Anything but DagConfigError escaping the loader fails the property."""
    error: DagConfigError | None = None
    try:
        result = load_dag_yaml(text, source="fuzz.yaml")
    except DagConfigError as raised:
        error = raised
    if error is None:
        assert isinstance(result, DagConfig)
        return
    assert error.issues, "an error must list at least one issue"
    assert all(issue.format("fuzz.yaml").startswith("fuzz.yaml:") for issue in error.issues)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents(document: object) -> None:
    check(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{},&*!|>'\"#%@ \n\t?")) | st.characters(), max_size=200))
def test_random_text(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutations_of_a_valid_dag(data: st.DataObject) -> None:
    lines = VALID_DAG.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "duplicate", "truncate", "replace"]))
        if action == "drop":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "truncate":
            lines[index] = lines[index][: data.draw(st.integers(0, len(lines[index])))]
        else:
            lines[index] = lines[index].replace(data.draw(st.sampled_from(KEYS)), data.draw(st.sampled_from(KEYS)), 1)
        if not lines:
            break
    check("\n".join(lines) + "\n")
