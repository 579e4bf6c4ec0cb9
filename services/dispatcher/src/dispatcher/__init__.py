"""The Trace dispatcher: public API, internal worker API, and the router/scheduler/reaper loops."""
