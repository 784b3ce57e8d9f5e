"""Run GreenGate under daphne, refusing oversized request bodies before they are read.

Stock daphne only hands a request to the ASGI app once Twisted has buffered the
whole body, so a size check inside Django comes too late to protect memory and
disk. ``LimitedWebRequest`` hooks the two points where Twisted's ``HTTPChannel``
reports the body (``gotLength`` after the headers, ``handleContentChunk`` per
piece) and answers 413 there, then closes the connection.

Usage::

    python -m greengate_site.server [--host H] [--port P] [--app module:attr]
                                    [--max-body-bytes N]
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import; it must come before
# anything else imports twisted.internet.reactor.
import daphne.server  # isort: skip

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.utils import import_by_path
from twisted.internet import defer, reactor

from gateway.errors import request_too_large
from greengate_site.request_context import new_request_id, request_id_var

# Named explicitly: under `python -m` __name__ would be "__main__".
logger = logging.getLogger("greengate_site.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_APP = "greengate_site.asgi:application"
LISTEN_BACKLOG = 4096


class ConfigError(Exception):
    """A command-line option or environment variable has an unusable value."""


def too_large_body(limit: int) -> bytes:
    """The OpenAI-shaped error body sent with the 413."""
    return json.dumps(request_too_large(limit).body()).encode()


class LimitedWebRequest(WebRequest):
    """daphne's request, but a body over the factory's limit is refused unread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes: int = self.channel.factory.max_body_bytes
        self.body_bytes_received = 0
        self.rejected = False

    def gotLength(self, length: int | None) -> None:
        # Called from allHeadersReceived() with the declared Content-Length
        # (None for chunked bodies), before a single body byte is consumed.
        if length is not None and length > self.max_body_bytes:
            # Expect: 100-continue is looked at right after this returns; the
            # client must get the 413 instead of an invitation to upload.
            self.requestHeaders.removeHeader(b"Expect")
            self.reject_too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.rejected:
            # Bytes that were already in the read buffer when we refused.
            return
        self.body_bytes_received += len(data)
        if self.body_bytes_received > self.max_body_bytes:
            self.reject_too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The body decoder can still reach its end inside the read that
        # triggered the refusal; never parse that partial body or run
        # process() (which would start the ASGI app).
        if self.rejected:
            return
        super().requestReceived(command, path, version)

    def reject_too_large(self) -> None:
        """Write a complete 413 and close the connection without reading on."""
        if self.rejected:
            return
        self.rejected = True
        channel = self.channel
        # requestReceived() copies the request line onto the request only once
        # the body is complete, so take it from the channel (for the status
        # line's protocol version and the log line).
        self.method = getattr(channel, "_command", self.method)
        self.uri = getattr(channel, "_path", self.uri)
        self.clientproto = getattr(channel, "_version", b"HTTP/1.1")
        request_id = new_request_id()
        path = self.uri.decode("ascii", "replace").split("?", 1)[0]
        token = request_id_var.set(request_id)
        try:
            logger.warning(
                "Refused %s %s from %s: request body over %d bytes",
                self.method.decode("ascii", "replace"),
                path,
                getattr(self.client, "host", self.client),
                self.max_body_bytes,
            )
            on_refused = self.channel.factory.on_refused
            if on_refused is not None:
                try:
                    on_refused(request_id, path)
                except Exception:  # noqa: BLE001 - the 413 must go out whatever the hook does
                    logger.exception("recording a refused request failed")
        finally:
            request_id_var.reset(token)

        body = too_large_body(self.max_body_bytes)
        self.setResponseCode(413)
        self.setHeader(b"Content-Type", b"application/json")
        # An explicit length keeps Twisted from using chunked framing, so the
        # response is complete as soon as it is written.
        self.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        self.setHeader(b"Connection", b"close")
        self.setHeader(b"X-Request-ID", request_id.encode())
        if self.server.server_name:
            self.setHeader(b"Server", self.server.server_name.encode())
        self.write(body)

        # No finish(): it would drop this request from the channel while the
        # body decoder may still call back into it. Closing the connection
        # flushes the 413, stops reading (LineReceiver also stops parsing what
        # it holds once the transport is disconnecting) and its connectionLost
        # does daphne's usual cleanup for this request.
        channel.persistent = False
        channel.loseConnection()


class LimitedHTTPFactory(HTTPFactory):
    """daphne's factory, building channels that use ``LimitedWebRequest``."""

    def __init__(
        self, server: daphne.server.Server, max_body_bytes: int, on_refused: Callable[[str, str], None] | None
    ) -> None:
        super().__init__(server)
        self.max_body_bytes = max_body_bytes
        # Called with (request id, path) for each refused request, e.g. to record it.
        self.on_refused = on_refused

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LimitedWebRequest
        return protocol


class LimitedServer(daphne.server.Server):
    """daphne's server with the body-size guard installed."""

    def __init__(
        self,
        application: Any,
        *,
        max_body_bytes: int,
        on_refused: Callable[[str, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.on_refused = on_refused
        super().__init__(application, **kwargs)

    # Server.run() builds its factory inline as ``self.http_factory =
    # HTTPFactory(self)``; swapping it on assignment avoids copying run().
    @property
    def http_factory(self) -> LimitedHTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        if not isinstance(factory, LimitedHTTPFactory):
            factory = LimitedHTTPFactory(self, self.max_body_bytes, self.on_refused)
        self._http_factory = factory


def serve(
    app: Any,
    host: str,
    port: int,
    max_body_bytes: int,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    on_refused: Callable[[str, str], None] | None = None,
) -> None:
    """Serve ``app`` on host:port until the reactor stops (Ctrl-C / SIGTERM)."""
    server: LimitedServer

    async def finish_requests() -> None:
        # daphne's own shutdown trigger cancels the requests in flight; once they have unwound
        # (and queued their ledger rows), on_shutdown can flush and close.
        instances = [d["application_instance"] for d in list(server.connections.values())]
        await asyncio.gather(*[i for i in instances if i is not None], return_exceptions=True)
        if on_shutdown is not None:
            await on_shutdown()

    def shutdown_trigger() -> defer.Deferred:
        return defer.Deferred.fromFuture(asyncio.ensure_future(finish_requests()))

    def announce() -> None:
        shown = f"[{host}]" if ":" in host else host
        for _, bound_port in server.listening_addresses:
            logger.info("GreenGate listening on http://%s:%s", shown, bound_port)

    server = LimitedServer(
        app,
        max_body_bytes=max_body_bytes,
        on_refused=on_refused,
        # Twisted listens with a backlog of 50; a burst of new connections beyond it waits out SYN retries.
        endpoints=[f"{e}:backlog={LISTEN_BACKLOG}" for e in build_endpoint_description_strings(host=host, port=port)],
        signal_handlers=True,
        # No action_logger and verbosity 1: no per-request access log lines and
        # Twisted's own log is discarded.
        action_logger=None,
        verbosity=1,
        # None: long-running streamed completions must not be cut off.
        http_timeout=None,
        ready_callable=announce,
    )
    reactor.addSystemEventTrigger("before", "shutdown", shutdown_trigger)
    server.run()


def _whole_number(raw: str, what: str, minimum: int, maximum: int | None = None) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{what} must be a whole number, got {raw!r}") from None
    if number < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{what} must be at most {maximum}, got {number}")
    return number


def load_app(path: str) -> Any:
    """Import ``module:attribute`` like daphne's CLI does."""
    module_path, _, attr_path = path.partition(":")
    if not module_path or not attr_path:
        raise ConfigError(f"--app must look like module.path:attribute, got {path!r}")
    try:
        __import__(module_path)
    except ModuleNotFoundError as exc:
        # Only a missing target is a config error; a broken import inside the
        # app should keep its traceback.
        missing = exc.name or ""
        if module_path != missing and not module_path.startswith(missing + "."):
            raise
        raise ConfigError(f"--app: cannot import module {module_path!r}") from None
    try:
        return import_by_path(path)
    except AttributeError:
        raise ConfigError(f"--app: {module_path!r} has no {attr_path!r}") from None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m greengate_site.server",
        description="Serve GreenGate with daphne and a request body size limit.",
    )
    # Strings, validated below, so a bad value gets our one-line message.
    parser.add_argument("--host", help=f"bind address (env HOST, default {DEFAULT_HOST})")
    parser.add_argument("--port", help=f"TCP port (env PORT, default {DEFAULT_PORT})")
    parser.add_argument("--app", default=DEFAULT_APP, help=f"ASGI app (default {DEFAULT_APP})")
    parser.add_argument(
        "--max-body-bytes",
        help=f"largest accepted request body in bytes (env MAX_REQUEST_BYTES, default {DEFAULT_MAX_BODY_BYTES})",
    )
    return parser.parse_args(argv)


def _greengate_defaults() -> tuple[str, str, str]:
    """HOST, PORT and MAX_REQUEST_BYTES as GreenGate's settings validated them, when the app is GreenGate."""
    from django.conf import settings

    if not settings.configured:
        return DEFAULT_HOST, str(DEFAULT_PORT), str(DEFAULT_MAX_BODY_BYTES)
    return settings.HOST, str(settings.PORT), str(settings.MAX_REQUEST_BYTES)


def _record_refused(request_id: str, path: str) -> None:
    """A refused chat completion still gets its ledger row, like every other request."""
    from django.conf import settings

    if settings.configured and path == "/v1/chat/completions":
        from gateway.accounting import account_refused

        account_refused(request_id, path, 413, "request_too_large")


async def _close_greengate() -> None:
    """Write every queued ledger row and close upstream connections before the process exits."""
    from django.conf import settings

    if not settings.configured or "ledger" not in settings.INSTALLED_APPS:
        return
    from ledger.writer import ledger_writer
    from providers.http import close_clients

    await ledger_writer.close()
    await close_clients()


def main(argv: Sequence[str] | None = None) -> None:
    from greengate_site.env import ConfigError as SettingsError

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Importing GreenGate's app loads and validates its settings, which then supply the defaults.
        app = load_app(args.app)
        default_host, default_port, default_max_body = _greengate_defaults()
        host = (args.host or default_host).strip()
        if not host:
            raise ConfigError("--host / HOST must not be empty")
        port = _whole_number(args.port or default_port, "--port / PORT", 1, 65535)
        max_body_bytes = _whole_number(
            args.max_body_bytes or default_max_body, "--max-body-bytes / MAX_REQUEST_BYTES", 1
        )
    except (ConfigError, SettingsError) as exc:
        sys.exit(f"GreenGate configuration error: {exc}")
    serve(app, host, port, max_body_bytes, on_shutdown=_close_greengate, on_refused=_record_refused)


if __name__ == "__main__":
    main()
