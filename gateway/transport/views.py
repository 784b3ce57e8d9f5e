"""DRF views of the OpenAI-compatible API; they adapt the pipeline to JSON over HTTP and nothing more."""

from __future__ import annotations

import logging
from inspect import iscoroutinefunction
from typing import Any

from adrf.views import APIView
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from gateway import pipeline
from gateway.auth import authenticate
from gateway.call import Call
from gateway.errors import GatewayError, internal_error, method_not_allowed, model_not_found
from gateway.live_config import live_config
from gateway.transport.consumers import CALL_KEY
from gateway.transport.responders import JsonResponder

logger = logging.getLogger(__name__)


class GatewayAPIView(APIView):
    """An adrf view without adrf's per-request thread hop.

    adrf runs DRF's initial() (authentication, permissions, throttles) through sync_to_async; GreenGate does
    those steps in the async pipeline, so only the renderer needs choosing, and that needs no thread.
    """

    renderer_classes = [JSONRenderer]

    async def async_dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        drf_request.accepted_renderer, drf_request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        # Methods are case-sensitive: "post" is not POST, and must not reach post().
        raw_method = drf_request.method or ""
        method = raw_method.lower() if raw_method.isupper() else ""
        try:
            handler = getattr(self, method, None)
            if method not in self.http_method_names or not iscoroutinefunction(handler):
                allowed = [m.upper() for m in ("get", "post") if iscoroutinefunction(getattr(self, m, None))]
                raise method_not_allowed(drf_request.method or "", allowed)
            response = await handler(drf_request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's handler turns it into an OpenAI-shaped error
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response


def openai_exception_handler(exc: Exception, context: Any) -> Response:
    """Every error the API returns has OpenAI's shape, an unexpected one included."""
    if isinstance(exc, GatewayError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        error = GatewayError(exc.status_code, str(exc.detail), code=codes if isinstance(codes, str) else None)
        return Response(error.body(), status=error.status)
    logger.exception("API view failed inside GreenGate")
    error = internal_error()
    return Response(error.body(), status=error.status)


class PipelineView(GatewayAPIView):
    """A request the ASGI edge identified (its Call on the scope), answered as JSON by the pipeline."""

    async def post(self, request: Any) -> HttpResponse:
        call: Call | None = request.scope.get(CALL_KEY)
        if call is None:  # not identified by the ASGI edge: only its POSTs are
            raise method_not_allowed(request.method or "", ["POST"])
        out = JsonResponder()
        await pipeline.serve(call, out)
        assert out.response is not None
        return out.response


class ChatCompletionsView(PipelineView):
    pass


class EmbeddingsView(PipelineView):
    pass


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "greengate"}


class ModelListView(GatewayAPIView):
    """The models this caller may use: routed ones, within its plan's, tenant's and key's lists."""

    async def get(self, request: Any) -> Response:
        key, snapshot = await authenticate(request.headers.get("Authorization"), live_config)
        names = sorted(name for name in snapshot.routes if key.limits.allows_model(name))
        return Response({"object": "list", "data": [_model_card(name) for name in names]})


class ModelDetailView(GatewayAPIView):
    async def get(self, request: Any, model: str) -> Response:
        key, snapshot = await authenticate(request.headers.get("Authorization"), live_config)
        if model not in snapshot.routes or not key.limits.allows_model(model):
            raise model_not_found(model)
        return Response(_model_card(model))
