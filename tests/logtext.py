"""A logging handler that keeps every formatted record as text, for tests that search logs for identifiers."""

from __future__ import annotations

import logging


class LogText(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += self.format(record) + "\n"
