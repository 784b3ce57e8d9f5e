"""Run an ASGI app under daphne, adding only what daphne lacks in front of the internet.

What this adds to stock daphne, and why:

- **Body limit.** daphne hands a request to the app only once Twisted has buffered the
  whole body, so a size check in the app comes too late for memory and disk. Bodies
  over ``--max-body-bytes`` get a 413 as soon as the declared or received size passes it.
- **Deadlines.** Twisted's idle timeout restarts on every byte, so a client sending one
  byte a minute holds a connection forever. The request head and the whole body must
  arrive within fixed deadlines counted from the request's start (408 otherwise), and an
  idle keep-alive connection is closed. Responses have no deadline: streams may run long.
- **JSON refusals.** Twisted answers bad requests with an empty 400 and daphne with an
  HTML page; every refusal made here is an OpenAI-shaped JSON error with an X-Request-ID.
  Bytes that cannot be HTTP/1.x (TLS on the plain port, bare-LF lines) are refused at once,
  and so are paths with ``.``/``..`` segments (Django's static handler answers those with a 500).
- **Graceful drain.** On SIGTERM daphne cancels every request at once. Here the server
  stops listening, closes idle connections, lets in-flight requests finish within
  ``SHUTDOWN_GRACE_SECONDS``, and only then cancels the rest.
- **Listen backlog** of 4096 instead of Twisted's 50.

The app may expose two optional hooks, both looked up as attributes of the ASGI app:
``on_refused(request_id, path, status, code, client_request_id=...)`` is called for each request the server
refuses itself once its request line was read (so it can be recorded), and
``on_draining()`` is called when SIGTERM starts the drain, and ``async on_shutdown()`` is awaited after it
(to flush what the app buffers). The server also gives each request its id (scope key
``greengate.request_id``), so a 503 it sends itself at the end of the grace carries the app's id.

Usage::

    python -m greengate_site.server [--host H] [--port P] [--app module:attr] [--max-body-bytes N]
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import; it must come before
# anything else imports twisted.internet.reactor, so the package does it first.
import daphne.server  # noqa: F401  # isort: skip
