"""nfd.log: loggers that load ``logging`` only when a record is emitted."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

from nfd.log import get_logger


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_nothing_logged_means_logging_never_imported():
    proc = run_python(
        """
        import sys
        from nfd import log
        log.setup(log.INFO)
        logger = log.get_logger("nfd.test")
        logger.debug("hidden %s", 1)
        print("logging" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert proc.stderr == ""


def test_first_record_loads_logging_with_the_configured_format():
    proc = run_python(
        """
        import sys
        from nfd import log
        log.setup(log.INFO, fmt="%(levelname)s %(name)s: %(message)s")
        log.get_logger("nfd.test").info("hello %s", "world")
        log.get_logger("nfd.test").debug("not shown")
        print("logging" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert proc.stderr == "INFO nfd.test: hello world\n"


def test_without_setup_warnings_still_reach_stderr():
    proc = run_python(
        """
        from nfd import log
        log.get_logger("nfd.test").info("dropped, as logging's default")
        log.get_logger("nfd.test").warning("careful")
        """
    )
    assert proc.returncode == 0
    assert proc.stderr == "careful\n"  # logging's last-resort handler


def test_setup_after_logging_is_loaded_applies_at_once():
    proc = run_python(
        """
        import logging
        from nfd import log
        log.setup(log.DEBUG, fmt="%(levelname)s: %(message)s")
        logging.getLogger("grpc").debug("from a library")
        """
    )
    assert proc.stderr == "DEBUG: from a library\n"


def test_records_go_through_logging_once_loaded(caplog):
    caplog.set_level(logging.DEBUG, logger="nfd.test.caplog")
    get_logger("nfd.test.caplog").debug("seen by caplog %d", 7)
    assert [r.getMessage() for r in caplog.records] == ["seen by caplog 7"]
    assert caplog.records[0].filename == "test_log.py"  # the caller, not nfd/log.py


def test_exception_carries_the_traceback(caplog):
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("nfd.test.exc").exception("failed")
    assert caplog.records[0].exc_info is not None


def test_one_logger_per_name():
    assert get_logger("nfd.same") is get_logger("nfd.same")
