"""The drift pages: server-rendered HTML of the results in Redis (docs/pages.md).

``app`` serves them (raw ASGI under uvicorn), ``data`` reads Redis as the exporter does,
``render`` and ``charts`` are the one renderer, shared with the report file
(workers/report.py).
"""
