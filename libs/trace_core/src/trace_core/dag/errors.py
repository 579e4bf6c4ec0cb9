"""What a DAG config error looks like: a field path, a message, and the line it points at."""

from __future__ import annotations

from dataclasses import dataclass

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: Path
    message: str
    line: int | None = None

    @property
    def field(self) -> str:
        """The dotted field path (`jobs.blocks.inputs.0.from.job`), or `<document>` for the whole file."""
        return ".".join(str(part) for part in self.path) or "<document>"

    def format(self, source: str) -> str:
        """`FILE:LINE: field.path: message`, the form editors and CI annotate."""
        return f"{source}:{self.line or 1}: {self.field}: {self.message}"


class DagConfigError(ValueError):
    """A DAG document that is not valid; `issues` lists every problem found, in document order."""

    def __init__(self, issues: list[ConfigIssue], source: str = "<dag>") -> None:
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.field))
        self.source = source
        super().__init__("\n".join(issue.format(source) for issue in self.issues))
