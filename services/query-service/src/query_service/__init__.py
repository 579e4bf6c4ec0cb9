"""The Query Service: `POST /v1/query` over Trace's published datasets (SPEC §5), a thin HTTP shell over
`trace_core.query`."""
