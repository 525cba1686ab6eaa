"""The worker fleet's Celery app and infrastructure: configuration, task and queue names,
Redis and PostgreSQL helpers, the stream, the metrics exporter, Flower and the local
client. It imports the core library (``stat_guard``) and never ``tasks``."""
