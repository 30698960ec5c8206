"""The error a dataset file raises when it cannot be used: one line that names the file.

:class:`DataFileError` is a ``ValueError`` (:class:`DataFileNotFoundError` is also a
``FileNotFoundError``), so library callers catch it as before; the command line prints it as
one line with exit code 2 (``ddetr_edu.cli.main``), also when it happens in the middle of
training.

In a DataLoader worker process PyTorch catches the exception and raises a new one of the same
type in the main process, built from a single string: "Caught DataFileError in DataLoader
worker process 0.", then the worker's whole traceback. The constructor below keeps only the
original message, the traceback's last line, so that the error reads the same with or
without workers.
"""
from __future__ import annotations

WORKER_PREFIX = "Caught "
WORKER_TRACEBACK = "Original Traceback"


class DataFileError(ValueError):
    """An annotation or image file that cannot be used; the message names the file."""

    def __init__(self, message: str) -> None:
        if message.startswith(WORKER_PREFIX) and WORKER_TRACEBACK in message:
            last = message.rstrip().splitlines()[-1]  # "package.module.DataFileError: <message>"
            message = last.partition(": ")[2] or last
        super().__init__(message)


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """A dataset file that does not exist."""


__all__ = ["DataFileError", "DataFileNotFoundError"]
