"""ASGI entry: the API (streams to a Channels consumer, the rest to DRF) and the admin to Django."""

# Channels routes with Django's path()/re_path(), whose stubs expect views rather than ASGI apps.
# mypy: disable-error-code="arg-type"

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.urls import path, re_path

from gateway.accounting import account_refused
from gateway.call import EMBEDDINGS
from gateway.lifecycle import start_draining
from gateway.transport.asgi import (
    AmbiguousPathGuard,
    APIHandler,
    CORSMiddleware,
    PipelineJoint,
    unknown_api_path,
)
from gateway.transport.consumers import ChatStreamConsumer
from greengate_site.request_id import RequestIdMiddleware

api_app = APIHandler()

# Inside /v1/ (the outer router has consumed that prefix).
api = CORSMiddleware(
    URLRouter(
        [
            path("chat/completions", PipelineJoint(api_app, ChatStreamConsumer.as_asgi())),
            path("embeddings", PipelineJoint(api_app, api_app, endpoint=EMBEDDINGS)),
            re_path(r"^models(/.+)?$", api_app),
            # Anything else under /v1 (a typo, a trailing slash) gets OpenAI's 404, not an HTML page.
            re_path(r"", unknown_api_path),
        ]
    )
)

application = ProtocolTypeRouter(
    {
        "http": RequestIdMiddleware(
            AmbiguousPathGuard(
                URLRouter(
                    [
                        re_path(r"^v1/", api),
                        # /v1 alone: OpenAI's 404 too.
                        re_path(r"^v1$", CORSMiddleware(unknown_api_path)),
                        path("healthz", api_app),
                        # Admin assets are served here too, so a bare `make run` needs no web server in front.
                        re_path(r"", ASGIStaticFilesHandler(django_app)),
                    ]
                )
            )
        )
    }
)


async def on_startup() -> None:
    """Once serving: replay ledger rows that processes gone before left in the spool; start periodic tasks."""
    from greengate_site import periodic
    from ledger.writer import ledger_writer

    ledger_writer.start()
    periodic.start()


async def on_shutdown() -> None:
    """After the server's drain: write every queued ledger row and audit event, then close upstream and Redis."""
    import asyncio

    from gateway import key_usage
    from greengate_site import async_db, periodic, redis
    from ledger import audit
    from ledger.writer import ledger_writer
    from providers import breaker
    from providers.http import close_clients

    await ledger_writer.close()
    await key_usage.flush()
    await audit.drain()  # open denial counts and audit writes in flight
    await async_db.close()
    await asyncio.to_thread(periodic.stop)
    await breaker.local.flush()
    await close_clients()
    await redis.aclose()


# Hooks the server (greengate_site.server) calls: it refuses some requests itself, and drains on SIGTERM.
application.on_refused = account_refused
application.on_shutdown = on_shutdown
application.on_startup = on_startup
application.on_draining = start_draining
