"""The public API (`/v1/*`): bearer API tokens, role-checked."""
