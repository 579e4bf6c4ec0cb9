"""devchain: a local EVM JSON-RPC server serving a deterministic synthetic chain, with a control API (SPEC §10)."""
