"""Logging to a rule's log file (and stderr), shared by every workflow script.

Everything the job writes to stderr reaches the log: log records, warnings, progress bars, the
output of processes it starts through `sys.stderr`, and the traceback of an uncaught exception.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO


class Tee:
    """A text stream writing to several streams (stderr and the log file)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def setup_logging(
    log_path: str | os.PathLike | None = None, level: int = logging.INFO
) -> logging.Logger:
    """Send stderr, the `mesa_moe` logger and warnings to `log_path` as well as stderr; return
    it."""
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        # the file stays open for the life of the process: stderr writes to it until exit
        sys.stderr = Tee(sys.__stderr__, open(log_path, "w", encoding="utf-8"))  # noqa: SIM115
    logging.basicConfig(
        level=level,
        handlers=[logging.StreamHandler(sys.stderr)],
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    return logging.getLogger("mesa_moe")
