"""Loggers that load the ``logging`` module only when a record is emitted.

A oneshot worker usually logs nothing, and ``logging`` (with the traceback,
threading, string and re modules it imports) was about a sixth of its start-up.
Modules on the worker's discovery path therefore take their logger from
``get_logger``: the same calls as a ``logging.Logger`` (``debug`` ... ``exception``,
``log``), which turn into real ``logging`` calls as soon as ``logging`` is loaded
(by a first record at or above the configured level, by a test, or by grpc).

``setup`` stands in for ``logging.basicConfig``: applied at once when ``logging``
is already loaded, otherwise with the first record.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import IO, Any

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Records below this level are dropped while ``logging`` is not loaded. Before
# ``setup`` it is logging's own default: WARNING and up reach stderr.
_threshold = WARNING
# basicConfig arguments that ``setup`` could not apply yet.
_pending: dict[str, Any] | None = None


def setup(level: int = INFO, stream: IO[str] | None = None, fmt: str = DEFAULT_FORMAT) -> None:
    """``logging.basicConfig(level, stream, format)``, deferred until something is logged."""
    global _threshold, _pending
    _threshold = level
    _pending = {"level": level, "stream": stream or sys.stderr, "format": fmt}
    if "logging" in sys.modules:
        load()


def load() -> Any:
    """Import ``logging`` and apply the pending ``setup``; returns the module.

    Long-running modes call this first, so that libraries that use ``logging``
    directly (grpc) log through the configured handler from the start.
    """
    global _pending
    import logging

    if _pending is not None:
        config, _pending = _pending, None
        logging.basicConfig(**config)
    return logging


class Logger:
    """The subset of ``logging.Logger`` our modules use, at no import cost."""

    __slots__ = ("name", "_real")

    def __init__(self, name: str) -> None:
        self.name = name
        self._real: logging.Logger | None = None

    def __repr__(self) -> str:
        return f"<nfd.log.Logger {self.name}>"

    def _logger(self) -> logging.Logger:
        if self._real is None:
            self._real = load().getLogger(self.name)
        return self._real

    def _wanted(self, level: int) -> bool:
        # Once logging is loaded, its own levels and handlers (pytest's caplog
        # among them) decide; until then only our threshold does.
        return self._real is not None or level >= _threshold or "logging" in sys.modules

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return self._wanted(level) and self._logger().isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(level):
            kwargs.setdefault("stacklevel", 2)
            self._logger().log(level, msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(DEBUG):
            self._logger().debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(INFO):
            self._logger().info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(WARNING):
            self._logger().warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(ERROR):
            self._logger().error(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._wanted(ERROR):
            self._logger().exception(msg, *args, stacklevel=2, **kwargs)


_loggers: dict[str, Logger] = {}


def get_logger(name: str) -> Logger:
    """The lazy logger for ``name`` (one per name, as ``logging.getLogger``)."""
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers[name] = Logger(name)
    return logger
