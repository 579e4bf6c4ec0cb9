"""The Trace worker: a wrapper that holds the platform credentials and child processes that run operators."""
