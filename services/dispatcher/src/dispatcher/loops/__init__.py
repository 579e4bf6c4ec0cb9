"""The dispatcher's loops (router, scheduler, reaper), run only by the replica holding the leader lock."""
