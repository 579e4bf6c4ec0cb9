-- name: notify_channels --
-- Everything pending, in one statement and so one commit: each notifying commit takes Postgres's global
-- notify lock and flushes WAL.
SELECT pg_notify(n.channel, n.payload) FROM unnest(%(channels)b::text[], %(payloads)b::text[]) AS n(channel, payload);
