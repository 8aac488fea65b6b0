"""Durable queue of asynchronous invocations: enqueue, lease, ack, retry, dead letters."""
