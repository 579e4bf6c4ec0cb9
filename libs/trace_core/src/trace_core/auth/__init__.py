"""Authentication and authorization: API tokens, the principal behind a request, role checks."""

from trace_core.auth.principal import SYSTEM_ROLES, Principal, has_role
from trace_core.auth.tokens import IssuedToken, hash_token, issue_token, service_credential_matches

__all__ = [
    "SYSTEM_ROLES",
    "IssuedToken",
    "Principal",
    "has_role",
    "hash_token",
    "issue_token",
    "service_credential_matches",
]
