"""ASGI entry: Channels routes streamed completions to its consumer and everything else to Django."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()  # sets Django up before the imports below touch models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from gateway.consumers import ChatStreamConsumer  # noqa: E402
from gateway.routing import ChatCompletionsRouter  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path("v1/chat/completions", ChatCompletionsRouter(django_app, ChatStreamConsumer.as_asgi())),
                # Admin assets are served here too, so a bare `make run` needs no web server in front.
                re_path(r"", ASGIStaticFilesHandler(django_app)),
            ]
        )
    }
)
