"""The Celery application of the drift worker fleet (configuration, queues, routing)."""
