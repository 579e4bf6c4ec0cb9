"""Who is calling, and the role rule: admin > writer > reader, plus org-defined roles."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

SYSTEM_ROLES = ("admin", "writer", "reader")
_RANK = {"reader": 1, "writer": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    user_name: str
    org_id: UUID
    org_name: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def has_role(principal: Principal, role: str) -> bool:
    """System roles are ordered (an admin may do what a writer may); an org-defined role is held or not,
    and admins hold every role."""
    if role in _RANK:
        return max((_RANK.get(r, 0) for r in principal.roles), default=0) >= _RANK[role]
    return role in principal.roles or principal.is_admin
