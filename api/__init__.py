"""Stateless HTTP producers: validate, enqueue work items in Redis, block on the per-request reply key."""
