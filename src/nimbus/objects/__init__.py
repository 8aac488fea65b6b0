"""Built-in object storage: buckets and objects behind the S3 REST API, with events.

Layers, each its own module:

- :mod:`.names`: bucket and key names (S3's rules);
- :mod:`.errors`: :class:`S3Error`, the error codes S3 clients expect;
- :mod:`.model`: the plain data (buckets, objects, uploads, changes);
- :mod:`.store`: objects on local disk (temp file, fsync, rename) and their
  metadata, multipart uploads and the event outbox in one SQLite database;
- :mod:`.body`: receiving a body (streamed, hashed, fsynced);
- :mod:`.events`: pure rules: which trigger an event matches, the S3 event
  notification record, deterministic event ids;
- :mod:`.service`: the use cases (who may touch which bucket) and the
  chain-depth limit on event loops; :mod:`.outbox`, the pump that moves
  committed events into the durable queue;
- :mod:`.sigv4s3`, :mod:`.chunked`: S3's flavour of Signature V4 (unnormalised
  paths, unsigned and streaming payloads, presigned URLs);
- :mod:`.xml`: the XML bodies; :mod:`.conditions`: ranges and conditional reads;
- :mod:`.operations`: the S3 operations, a parsed request and a caller in, an
  answer out;
- :mod:`.s3_api`: the ASGI door at ``/s3`` (and the one instances reach through
  their Runtime API socket, see :mod:`nimbus.runtime_api.storage`);
- :mod:`.routes`: ``/v1/buckets``, for Nimbus's own API and ``nimbus bucket``.

See docs/object-storage.md.
"""
