"""Log records leave the event loop through a queue; a thread formats them as JSON and writes stdout.

Writing to stdout can block (a slow pipe, a full terminal buffer), and the event loop must never wait on it.
"""

from __future__ import annotations

import atexit
import copy
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


class StdoutQueueHandler(QueueHandler):
    """A QueueHandler whose listener thread writes JSON lines to stdout; one per process."""

    def __init__(self) -> None:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(records)
        writer = logging.StreamHandler(sys.stdout)
        writer.setFormatter(JsonFormatter(FIELDS, rename_fields=RENAMED))
        self._listener = QueueListener(records, writer, respect_handler_level=False)
        self._listener.start()
        atexit.register(self._listener.stop)  # flush what is queued when the process ends

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The queue stays in this process, so nothing is pickled: the record keeps its extra fields and its
        # exception for the JSON formatter. Only the message is rendered now, while its arguments are current.
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record
