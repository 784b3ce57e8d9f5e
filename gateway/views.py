"""DRF views of the OpenAI-compatible API; they adapt the pipeline to JSON over HTTP and nothing more."""

from __future__ import annotations

import logging
from inspect import iscoroutinefunction

from adrf.views import APIView
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from gateway import pipeline
from gateway.accounting import Call
from gateway.auth import authenticate
from gateway.errors import GatewayError, internal_error, model_not_found, request_too_large
from gateway.live_config import live_config
from greengate_site.request_id import request_id_of

logger = logging.getLogger(__name__)


class GatewayAPIView(APIView):
    """An adrf view without adrf's per-request thread hop.

    adrf runs DRF's initial() (authentication, permissions, throttles) through sync_to_async; GreenGate does
    those steps in the async pipeline, so only the renderer needs choosing, and that needs no thread.
    """

    renderer_classes = [JSONRenderer]

    async def async_dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        try:
            handler = getattr(self, request.method.lower(), None)
            if request.method.lower() not in self.http_method_names or not iscoroutinefunction(handler):
                raise exceptions.MethodNotAllowed(request.method)
            response = await handler(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's handler turns it into an OpenAI-shaped error
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


def openai_exception_handler(exc, context) -> Response:
    """Every error the API returns has OpenAI's shape, an unexpected one included."""
    if isinstance(exc, GatewayError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else None
        error = GatewayError(exc.status_code, str(exc.detail), code=code)
        return Response(error.body(), status=error.status)
    logger.exception("API view failed inside GreenGate")
    error = internal_error()
    return Response(error.body(), status=error.status)


class ChatCompletionsView(GatewayAPIView):
    async def post(self, request) -> Response:
        call = Call(request_id=request_id_of(request.scope), stream=False)
        try:
            body = request.body
        except RequestDataTooBig:
            raise request_too_large(settings.MAX_REQUEST_BYTES) from None
        result = await pipeline.complete(call, body, request.headers.get("Authorization"))
        return Response(result)


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "greengate"}


class ModelListView(GatewayAPIView):
    async def get(self, request) -> Response:
        _, snapshot = await authenticate(request.headers.get("Authorization"), live_config)
        return Response({"object": "list", "data": [_model_card(name) for name in sorted(snapshot.routes)]})


class ModelDetailView(GatewayAPIView):
    async def get(self, request, model: str) -> Response:
        _, snapshot = await authenticate(request.headers.get("Authorization"), live_config)
        if model not in snapshot.routes:
            raise model_not_found(model)
        return Response(_model_card(model))
