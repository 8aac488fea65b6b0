"""Event sources that start invocations: HTTP function URLs, timers, storage, queues."""
