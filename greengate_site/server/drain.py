"""daphne's server and connection factory with a graceful drain instead of its kill-all on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import daphne.server
from daphne.endpoints import build_endpoint_description_strings
from daphne.http_protocol import HTTPFactory
from twisted.internet import defer
from twisted.web import http

from greengate_site.request_context import new_request_id, request_id_var
from greengate_site.request_id import SCOPE_KEY as REQUEST_ID_SCOPE_KEY
from greengate_site.server.protocol import GuardedChannel, GuardedRequest, Limits

logger = logging.getLogger("greengate_site.server")

LISTEN_BACKLOG = 4096
# How long cancelled requests get to unwind (and be recorded) once the grace period is over.
CANCEL_WAIT_SECONDS = 5.0

RefusedHook = Callable[..., None]  # (request_id, path, status, code, *, client_request_id)
ShutdownHook = Callable[[], Awaitable[None]]


class GuardedHTTPFactory(HTTPFactory):
    """daphne's factory, building ``GuardedChannel`` connections and tracking them for the drain."""

    def __init__(self, server: GuardedServer) -> None:
        super().__init__(server)
        self.limits = server.limits
        self.on_refused = server.on_refused
        # The channels' own deadlines replace Twisted's per-byte idle timeout.
        self.timeOut = None
        self.channels: set[GuardedChannel] = set()
        self.draining = False

    def protocol(self) -> Any:
        return http._GenericHTTPChannelProtocol(GuardedChannel())

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        return protocol

    def report_refused(
        self, request_id: str, client_id: str, path: str | None, status: int, code: str, message: str, peer: str
    ) -> None:
        """Log a refusal and, once a request line was read (``path``), tell the app through its hook."""
        # The request id on the log line and on whatever the hook logs, as for any request.
        token = request_id_var.set(request_id)
        try:
            logger.warning("Refused %s from %s with %d %s: %s", path or "a request", peer, status, code, message)
            if path is not None and self.on_refused is not None:
                try:
                    self.on_refused(request_id, path, status, code, client_request_id=client_id)
                except Exception:  # noqa: BLE001 - the refusal must go out whatever the hook does
                    logger.exception("the app's on_refused hook failed")
        finally:
            request_id_var.reset(token)


class GuardedServer(daphne.server.Server):
    """daphne's server with ``GuardedHTTPFactory`` and a graceful drain instead of its kill-all."""

    def __init__(self, application: Any, *, limits: Limits, shutdown_grace: float, **kwargs: Any) -> None:
        self.limits = limits
        self.shutdown_grace = shutdown_grace
        self.on_refused: RefusedHook | None = getattr(application, "on_refused", None)
        self.on_shutdown: ShutdownHook | None = getattr(application, "on_shutdown", None)
        self.on_draining: Callable[[], None] | None = getattr(application, "on_draining", None)
        self.on_startup: ShutdownHook | None = getattr(application, "on_startup", None)
        self.ports: list[Any] = []
        super().__init__(application, **kwargs)

    # Server.run() builds its factory inline as ``self.http_factory = HTTPFactory(self)``;
    # swapping it on assignment avoids copying run().
    @property
    def http_factory(self) -> GuardedHTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, GuardedHTTPFactory) else GuardedHTTPFactory(self)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        # The request's id, made here so that the app and any refusal this server sends agree on it.
        request_id = new_request_id()
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        protocol.greengate_request_id = request_id
        return super().create_application(protocol, scope)

    def start_app(self) -> None:
        """Run the app's on_startup hook once the reactor (and with it the asyncio loop) runs."""
        hook = self.on_startup
        if hook is None:
            return

        async def run() -> None:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - serving goes on; the hook's work is retried by its own means
                logger.exception("the app's on_startup hook failed")

        asyncio.ensure_future(run())

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        self.ports.append(port)

    def kill_all_applications(self) -> defer.Deferred:
        # daphne runs this before the reactor shuts down; the reactor waits for the Deferred.
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.drain()))

    async def drain(self) -> None:
        """Stop taking requests, finish those in flight (within the grace), then close down."""
        factory = self.http_factory
        factory.draining = True
        if self.on_draining is not None:
            try:
                self.on_draining()
            except Exception:  # noqa: BLE001 - the drain goes on whatever the hook does
                logger.exception("the app's on_draining hook failed")
        for port in self.ports:
            port.stopListening()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        while True:
            for channel in list(factory.channels):
                if channel.between_requests:
                    channel.close()
            running = self._running_applications()
            receiving = [c for c in factory.channels if c.phase in ("head", "body")]
            if not running and not receiving:
                break
            if loop.time() >= deadline:
                logger.warning("Shutdown grace of %gs over: cancelling %d requests", self.shutdown_grace, len(running))
                self._cancel_applications()
                if running:
                    await asyncio.wait(running, timeout=CANCEL_WAIT_SECONDS)
                break
            await asyncio.sleep(0.05)
        # Closing lets Twisted flush each connection's last response before the reactor stops
        # (it drops whatever is still unwritten when it does).
        for channel in list(factory.channels):
            channel.close()
        flush_deadline = loop.time() + CANCEL_WAIT_SECONDS
        while factory.channels and loop.time() < flush_deadline:
            await asyncio.sleep(0.05)
        if self.on_shutdown is not None:
            try:
                await self.on_shutdown()
            except Exception:  # noqa: BLE001 - the process is exiting either way
                logger.exception("the app's on_shutdown hook failed")

    def _cancel_applications(self) -> None:
        for request, details in list(self.connections.items()):
            instance = details.get("application_instance")
            if instance is None or instance.done():
                continue
            instance.cancel()
            if isinstance(request, GuardedRequest):
                # Clients (the OpenAI SDK among them) retry a 503, e.g. on another instance.
                request.answer_error(
                    503, "server_shutting_down", "The server is shutting down; retry the request.", kind="server_error"
                )

    def _running_applications(self) -> list[asyncio.Future[Any]]:
        instances = (details.get("application_instance") for details in list(self.connections.values()))
        return [i for i in instances if i is not None and not i.done()]


def serve(app: Any, host: str, port: int, limits: Limits, shutdown_grace: float) -> None:
    """Serve ``app`` on host:port until SIGTERM or Ctrl-C, then drain and return."""

    def announce() -> None:
        shown = f"[{host}]" if ":" in host else host
        for _, bound_port in server.listening_addresses:
            logger.info("GreenGate listening on http://%s:%s", shown, bound_port)
        from twisted.internet import reactor

        reactor.callWhenRunning(server.start_app)

    server = GuardedServer(
        app,
        limits=limits,
        shutdown_grace=shutdown_grace,
        # Twisted listens with a backlog of 50; a burst of new connections beyond it waits out SYN retries.
        endpoints=[f"{e}:backlog={LISTEN_BACKLOG}" for e in build_endpoint_description_strings(host=host, port=port)],
        signal_handlers=True,
        # No action_logger and verbosity 1: no per-request access log lines and Twisted's own log is discarded.
        action_logger=None,
        verbosity=1,
        # None: long-running streamed completions must not be cut off.
        http_timeout=None,
        ready_callable=announce,
    )
    server.run()
