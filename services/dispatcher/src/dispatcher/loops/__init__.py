"""The dispatcher's loops (router, scheduler, reaper, rebuilds), run only by the replica holding the leader lock."""
