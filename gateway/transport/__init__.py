"""How requests reach the pipeline: the ASGI edge, DRF views for JSON, a Channels consumer for SSE."""
