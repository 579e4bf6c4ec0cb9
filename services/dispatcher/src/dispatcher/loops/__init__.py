"""The dispatcher's loops (router, scheduler, reaper, rebuilds, its own operators), run only by the replica
holding the leader lock."""
