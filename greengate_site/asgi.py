"""ASGI entry: Channels routes streamed completions to its consumer, the rest of the API and the admin to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from gateway.consumers import ChatStreamConsumer  # noqa: E402
from gateway.routing import APIHandler, ChatCompletionsRouter  # noqa: E402
from greengate_site.request_id import RequestIdMiddleware  # noqa: E402

api_app = APIHandler()

application = ProtocolTypeRouter(
    {
        "http": RequestIdMiddleware(
            URLRouter(
                [
                    path("v1/chat/completions", ChatCompletionsRouter(api_app, ChatStreamConsumer.as_asgi())),
                    re_path(r"^(v1/|healthz$)", api_app),
                    # Admin assets are served here too, so a bare `make run` needs no web server in front.
                    re_path(r"", ASGIStaticFilesHandler(django_app)),
                ]
            )
        )
    }
)
