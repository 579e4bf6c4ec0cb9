"""Load a DAG from YAML, reporting every problem with its line number and field path.

The YAML is composed into nodes first, so each value's line is known; pydantic then checks types and
single-field rules, and `trace_core.dag.validate` the rules between fields. Nothing but `DagConfigError`
escapes for any input text.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

import yaml
from pydantic import ValidationError

from trace_core.dag.config import DagConfig
from trace_core.dag.errors import ConfigIssue, DagConfigError, Path
from trace_core.dag.validate import check_dag

MAX_DOCUMENT_BYTES = 1_000_000


def load_dag_file(path: FilePath) -> DagConfig:
    """Read and load a DAG file; unreadable files are reported like any other config error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DagConfigError([ConfigIssue((), f"cannot read the file: {error}", 1)], str(path)) from None
    return load_dag_yaml(text, source=str(path))


def load_dag_yaml(text: str, *, source: str = "<dag>") -> DagConfig:
    """Parse and validate one DAG document; raises `DagConfigError` listing every problem."""
    document, lines = _compose(text, source)
    try:
        config = DagConfig.model_validate(document)
    except ValidationError as error:
        raise DagConfigError([_issue_from_pydantic(e, lines) for e in error.errors()], source) from None
    issues = check_dag(config)
    if issues:
        raise DagConfigError([_with_line(issue, lines) for issue in issues], source)
    return config


def _compose(text: str, source: str) -> tuple[dict[str, Any], dict[Path, int]]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise DagConfigError([ConfigIssue((), f"the document is larger than {MAX_DOCUMENT_BYTES} bytes", 1)], source)
    lines: dict[Path, int] = {}
    duplicates: list[ConfigIssue] = []
    node: yaml.Node | None = None
    document: Any = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _index_lines(node, (), lines, duplicates)
                document = loader.construct_document(node) if not duplicates else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise DagConfigError([ConfigIssue((), f"not valid YAML: {message}", line)], source) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise DagConfigError(
            [ConfigIssue((), f"not valid YAML: {error.reason} (character #x{error.character:04x})", line)],
            source,
        ) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as error:
        raise DagConfigError([ConfigIssue((), f"not valid YAML: {error}", 1)], source) from None
    if node is None:
        raise DagConfigError(
            [ConfigIssue((), "the document is empty; a DAG needs at least `dag:` and `jobs:`", 1)], source
        )
    if duplicates:
        raise DagConfigError(duplicates, source)
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "null"
        raise DagConfigError(
            [
                ConfigIssue(
                    (),
                    f"a DAG document is a mapping with `dag:` and `jobs:`, not a {kind}",
                    node.start_mark.line + 1,
                )
            ],
            source,
        )
    return document, lines


def _index_lines(node: yaml.Node, path: Path, lines: dict[Path, int], duplicates: list[ConfigIssue]) -> None:
    """Record the 1-based line of every path in the node tree, and flag keys given twice."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a complex key: construction rejects or pydantic reports it
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key == "<<":
                _index_lines(value_node, path, lines, duplicates)
                continue
            if key in seen:
                duplicates.append(
                    ConfigIssue((*path, key), f"key {key!r} is given twice (first on line {seen[key]})", line)
                )
                continue
            seen[key] = line
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines, duplicates)


def _line_of(path: Path, lines: dict[Path, int]) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _with_line(issue: ConfigIssue, lines: dict[Path, int]) -> ConfigIssue:
    return ConfigIssue(issue.path, issue.message, _line_of(issue.path, lines))


def _issue_from_pydantic(error: Any, lines: dict[Path, int]) -> ConfigIssue:
    path: Path = tuple(part for part in error["loc"] if isinstance(part, str | int))
    if error["type"] == "extra_forbidden":
        message = f"unknown key {path[-1]!r}" if path else "unknown key"
    elif error["type"] == "missing":
        message = "this field is required"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigIssue(path, message, _line_of(path, lines))
