"""local source: feature files in features.d and hook programs in source.d.

Feature files follow upstream (v0.15+): ``key`` or ``key=value`` lines,
``#`` comments, the directives ``# +expiry-time=<RFC3339>``, ``# +no-label``
and ``# +no-feature``, hidden files ignored, files over 64 KiB skipped. Keys
are kept as written (an unprefixed key stays unprefixed; the master adds the
default namespace). Results: attribute sets ``local.label`` (published as
labels) and ``local.feature`` (raw features only). An entry that is not a
regular file (a FIFO, a device, a directory, a symlink loop) or is over the
limit is skipped with a warning saying why, before it is opened or read.

Hooks differ from upstream on purpose (upstream ran them with no limits and
dropped them in v0.17): hooks are on by default (``hooksEnabled: false``
turns them off); each runs with no arguments, no stdin, a clean environment
(only PATH), in its own session, below a supervisor that kills every process
it leaves behind (``_hook_supervisor.py``), with a timeout (``hookTimeout``,
default 10s; all hooks together ``hooksTotalTimeout``, default 30s) after
which it is killed with all it started, and output caps (``hookOutputLimit``,
default 64 KiB, for stdout; 1 MiB for stderr). A hook that fails, hangs or
overflows costs only its own features, and is logged with its name and why.

Directories are container paths, not under the host prefix, as upstream
mounts them (``featuresDir``, ``hooksDir``; ``--features-dir``,
``--hooks-dir``).
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nfd import origins
from nfd.durations import parse_duration
from nfd.features import Features
from nfd.hostfs import FileRefused, read_regular_file, stat_regular_file
from nfd.sources import Source, SourceContext

log = logging.getLogger(__name__)

DEFAULT_FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
DEFAULT_HOOKS_DIR = "/etc/kubernetes/node-feature-discovery/source.d"
DEFAULT_HOOK_TIMEOUT = 10.0
DEFAULT_HOOKS_TOTAL_TIMEOUT = 30.0
MAX_FILE_SIZE = 64 * 1024
# All feature files together: what one discovery reads and parses at most.
MAX_TOTAL_SIZE = 8 << 20
DEFAULT_HOOK_OUTPUT_LIMIT = 64 * 1024
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How much of a hook's stderr is kept for the log, and how much is read at all: a hook
# that writes more is killed like one that floods stdout (no deadlock, no CPU spent on
# draining it until the timeout).
STDERR_LIMIT = 16 * 1024
STDERR_DRAIN_LIMIT = 1 << 20
# The script that runs each hook as a subreaper and kills whatever the hook leaves behind.
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_hook_supervisor.py")
# How long the supervisor gets to kill a timed-out hook's processes before it is killed.
STOP_GRACE = 3.0

DIRECTIVE_PREFIX = "# +"
FEATURE_SET = "local.feature"
LABEL_SET = "local.label"


@dataclass
class ParsedFeatures:
    """Features, labels and warnings of feature files or hooks."""

    features: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # label -> the files and hooks that set it, in order (nfd.origins entries).
    origins: dict[str, list[str]] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Go's time.RFC3339 (``2006-01-02T15:04:05Z07:00``, fractional seconds allowed)."""
    value = text.strip()
    if len(value) < 20 or value[10] not in "Tt":
        raise ValueError(f"cannot parse {text!r} as RFC3339")
    if value[-1] in "Zz":
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot parse {text!r} as RFC3339") from None
    if parsed.tzinfo is None:
        raise ValueError(f"cannot parse {text!r} as RFC3339: missing time zone")
    return parsed


def parse_feature_text(text: str, origin: str, now: datetime | None = None) -> ParsedFeatures:
    """Parse one feature file (or hook output); bad lines become warnings.

    ``now`` defaults to the current time, taken when the first ``expiry-time``
    directive needs it (until then nothing has expired).
    """
    out = ParsedFeatures()
    expiry = None  # no expiry-time directive yet: never expired
    skip_label = skip_feature = False
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{origin}:{lineno}"
        if line.startswith("#"):
            if line.startswith(DIRECTIVE_PREFIX):
                directive = line[len(DIRECTIVE_PREFIX) :]
                if directive.startswith("expiry-time="):
                    try:
                        expiry = parse_rfc3339(directive[len("expiry-time=") :])
                        now = now or _now()
                    except ValueError as err:
                        out.warnings.append(f"{where}: invalid expiry-time directive: {err}")
                elif directive == "no-label":
                    skip_label = True
                elif directive == "no-feature":
                    skip_feature = True
                else:
                    out.warnings.append(f"{where}: unknown directive {line!r}, ignored")
            continue
        if "\x00" in line or _has_undecoded_bytes(line):
            out.warnings.append(f"{where}: line is not valid UTF-8 text, skipped")
            skip_label = skip_feature = False
            continue
        key, sep, value = line.partition("=")
        if not key:
            out.warnings.append(f"{where}: empty feature name in {line!r}, skipped")
            skip_label = skip_feature = False
            continue
        if not sep:
            value = "true"
        if expiry is not None and now is not None and expiry < now:
            skip_label = skip_feature = False
            continue
        if skip_label:
            out.labels.pop(key, None)
        else:
            out.labels[key] = value
        if skip_feature:
            out.features.pop(key, None)
        else:
            out.features[key] = value
        skip_label = skip_feature = False
    return out


def _has_undecoded_bytes(line: str) -> bool:
    """Whether ``line`` holds a lone surrogate U+DC80..U+DCFF (see ``_decode``)."""
    return not line.isascii() and any("\udc80" <= char <= "\udcff" for char in line)


def _decode(data: bytes) -> str:
    # Undecodable bytes become lone surrogates, so the parser can skip just
    # the lines that hold them.
    return data.decode("utf-8", errors="surrogateescape")


def _visible_entries(directory: str) -> list[str]:
    """Paths of the entries of ``directory`` in name order, hidden ones left out.

    Every kind of entry is returned: the reader refuses what is not a regular file,
    with the reason, instead of skipping it unseen.
    """
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        log.warning("local: cannot list %s: %s", directory, err.strerror)
        return []
    return [os.path.join(directory, name) for name in names if not name.startswith(".")]


def read_feature_files(directory: str, now: datetime | None = None) -> ParsedFeatures:
    """All feature files of ``directory`` in name order; later files win.

    A file that is not a regular file of at most MAX_FILE_SIZE bytes (a directory, a
    FIFO, a device, a symlink loop, a sparse or growing file) is skipped with a warning;
    so are the files after the first MAX_TOTAL_SIZE bytes.
    """
    total = ParsedFeatures()
    size = 0
    entries = _visible_entries(directory)
    for index, path in enumerate(entries):
        if size > MAX_TOTAL_SIZE:
            total.warnings.append(
                f"{directory}: over {MAX_TOTAL_SIZE} bytes of feature files in all, "
                f"{len(entries) - index} entries from {os.path.basename(path)} on skipped"
            )
            break
        try:
            data = read_regular_file(path, MAX_FILE_SIZE)
        except FileRefused as err:
            total.warnings.append(f"{err}, file skipped")
            continue
        size += len(data)
        parsed = parse_feature_text(_decode(data), path, now)
        _merge(total, parsed, path, origins.entry(origins.FILE, os.path.basename(path)))
    return total


def _merge(total: ParsedFeatures, parsed: ParsedFeatures, where: str, origin: str = "") -> None:
    """Add ``parsed`` (one file's or hook's, or all hooks' with their own origins) to
    ``total``; ``origin`` is the nfd.origins entry of a single file or hook."""
    for key in parsed.labels.keys() & total.labels.keys():
        log.debug("local: %s overrides label %s", where, key)
    total.features.update(parsed.features)
    total.labels.update(parsed.labels)
    total.warnings.extend(parsed.warnings)
    for key in parsed.labels:
        setters = total.origins.setdefault(key, [])
        setters.extend(parsed.origins.get(key, ()) if not origin else (origin,))
        del setters[: -origins.MAX_SETTERS]


# -- hooks -------------------------------------------------------------------


@dataclass
class HookResult:
    """What one hook run produced."""

    path: str
    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    overflowed: bool = False
    stderr_overflowed: bool = False
    # Processes the hook left running when it exited, all killed.
    leftover: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        failed = self.error or self.timed_out or self.overflowed or self.stderr_overflowed
        return not failed and self.returncode == 0


# One "word number" line per fact the supervisor reports (see _hook_supervisor.py).
_STATUS_LINE = re.compile(rb"^(pid|error|exit|leftover) (-?[0-9]+)$", re.MULTILINE)


def _read_status(fd: int) -> dict[str, int]:
    data = bytearray()
    while chunk := os.read(fd, 4096):  # the writer is gone: this ends
        data += chunk
    return {m[1].decode(): int(m[2]) for m in _STATUS_LINE.finditer(data)}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Make the supervisor kill the hook and its processes, then kill the supervisor."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pump(proc: subprocess.Popen[bytes], deadline: float, limit: int, result: HookResult) -> None:
    """Read stdout (up to ``limit``) and stderr until both end, the deadline or a cap."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err_buf = bytearray(), bytearray()
    err_total = 0
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, "out")
        selector.register(proc.stderr, selectors.EVENT_READ, "err")
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "out":
                    out += chunk
                    result.overflowed = len(out) > limit
                else:
                    err_total += len(chunk)
                    err_buf += chunk[: max(STDERR_LIMIT - len(err_buf), 0)]
                    result.stderr_overflowed = err_total > STDERR_DRAIN_LIMIT
            if result.overflowed or result.stderr_overflowed:
                break
    result.stdout = bytes(out[:limit])
    result.stderr = bytes(err_buf)


def run_hook(path: str, timeout: float, output_limit: int) -> HookResult:
    """Run one hook under a timeout and output caps; never raises for the hook's faults.

    The hook runs below a supervisor process (``_hook_supervisor.py``) that kills every
    process the hook leaves behind, including ones that left its session.
    """
    result = HookResult(path, None)
    hook = os.path.abspath(path)
    status_read, status_write = os.pipe()
    command = [sys.executable, "-I", "-S", SUPERVISOR, str(status_write), hook, HOOK_PATH]
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": HOOK_PATH},
            cwd=os.path.dirname(hook),
            start_new_session=True,
            close_fds=True,
            pass_fds=(status_write,),
        )
    except OSError as err:
        os.close(status_read)
        result.error = f"cannot start the hook supervisor: {err.strerror or err}"
        return result
    finally:
        os.close(status_write)
    try:
        deadline = time.monotonic() + timeout
        _pump(proc, deadline, output_limit, result)
        if not (result.timed_out or result.overflowed or result.stderr_overflowed):
            try:
                proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                result.timed_out = True
    finally:
        _stop(proc)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        status = _read_status(status_read)
        os.close(status_read)
    if proc.returncode < 0 and "pid" in status:
        _kill_group(status["pid"])  # the supervisor was killed: at least the hook's group
    if "error" in status:
        result.error = f"cannot execute: {os.strerror(status['error'])}"
    elif "exit" in status:
        result.returncode = status["exit"]
    elif not (result.timed_out or result.overflowed or result.stderr_overflowed):
        detail = result.stderr.decode("utf-8", "replace").strip()[-500:]
        result.error = f"hook supervisor failed with status {proc.returncode}: {detail}"
    result.leftover = status.get("leftover", 0)
    return result


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _hook_failure(result: HookResult, timeout: str, elapsed: float, limit: int) -> str:
    """Why a hook's output is not used, or "" when it is."""
    if result.error:
        return result.error
    if result.timed_out:
        return f"killed after {timeout} (ran {elapsed:.1f}s), output discarded"
    if result.overflowed:
        return f"output over {limit} bytes, killed, output discarded"
    if result.stderr_overflowed:
        return f"stderr over {STDERR_DRAIN_LIMIT} bytes, killed, output discarded"
    if result.returncode != 0:
        status = (
            f"killed by signal {-result.returncode}"
            if result.returncode is not None and result.returncode < 0
            else f"exit status {result.returncode}"
        )
        return f"failed with {status}, output discarded"
    return ""


def run_hooks(
    directory: str,
    timeout: float,
    output_limit: int,
    now: datetime | None = None,
    total_timeout: float = DEFAULT_HOOKS_TOTAL_TIMEOUT,
) -> ParsedFeatures:
    """Run every executable in ``directory``; each hook's failure costs only its output.

    Each hook gets ``timeout`` seconds, and all of them together ``total_timeout``: the
    hooks whose turn comes after that are not run.
    """
    total = ParsedFeatures()
    began = time.monotonic()
    for path in _visible_entries(directory):
        name = os.path.basename(path)
        try:
            stat_regular_file(path, sys.maxsize)
        except FileRefused as err:
            total.warnings.append(f"hook {name}: {err.reason}, skipped")
            continue
        if not os.access(path, os.X_OK):
            total.warnings.append(f"hook {name}: not executable, skipped")
            continue
        budget = min(timeout, total_timeout - (time.monotonic() - began))
        if budget <= 0:
            total.warnings.append(
                f"hook {name}: not run, all hooks together used up their {total_timeout:g}s "
                "(hooksTotalTimeout)"
            )
            continue
        start = time.monotonic()
        result = run_hook(path, budget, output_limit)
        elapsed = time.monotonic() - start
        for line in result.stderr.decode("utf-8", "replace").splitlines():
            log.info("hook %s: %s", name, line)
        if result.leftover:
            total.warnings.append(
                f"hook {name}: {result.leftover} process(es) it left running were killed"
            )
        limit_text = (
            f"{timeout:g}s timeout"
            if budget == timeout
            else f"{budget:.1f}s, what was left of hooksTotalTimeout {total_timeout:g}s"
        )
        failure = _hook_failure(result, limit_text, elapsed, output_limit)
        if failure:
            total.warnings.append(f"hook {name}: {failure}")
            continue
        text = _decode(result.stdout)
        parsed = parse_feature_text(text, f"hook {name}", now)
        _merge(total, parsed, f"hook {name}", origins.entry(origins.HOOK, name))
    return total


# -- the source ----------------------------------------------------------------


def _duration(config: dict[str, Any], key: str, default: float) -> float:
    try:
        seconds = parse_duration(config[key])
    except ValueError as err:
        log.warning("sources.local.%s: %s; using %gs", key, err, default)
        return default
    return seconds if seconds > 0 else default


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class LocalSource(Source):
    name = "local"
    priority = 20
    prefix_labels = False

    def default_config(self) -> dict[str, Any]:
        return {
            "featuresDir": DEFAULT_FEATURES_DIR,
            "hooksDir": DEFAULT_HOOKS_DIR,
            "hooksEnabled": True,
            "hookTimeout": "10s",
            "hooksTotalTimeout": "30s",
            "hookOutputLimit": DEFAULT_HOOK_OUTPUT_LIMIT,
        }

    def discover(self, ctx: SourceContext) -> Features:
        config = {**self.default_config(), **dict(ctx.config)}
        # The time "now" for expiry-time directives is taken when one is met.
        result = read_feature_files(str(config["featuresDir"]))
        if _bool(config["hooksEnabled"]):
            timeout = _duration(config, "hookTimeout", DEFAULT_HOOK_TIMEOUT)
            total = _duration(config, "hooksTotalTimeout", DEFAULT_HOOKS_TOTAL_TIMEOUT)
            try:
                limit = int(config["hookOutputLimit"])
            except (TypeError, ValueError):
                limit = DEFAULT_HOOK_OUTPUT_LIMIT
            hooks = run_hooks(str(config["hooksDir"]), timeout, max(limit, 1), total_timeout=total)
            # Hooks run last, so they override feature files.
            _merge(result, hooks, "hooks")
        for warning in result.warnings:
            log.warning("local: %s", warning)
        features = Features()
        features.add_attributes(FEATURE_SET, result.features)
        features.add_attributes(LABEL_SET, result.labels)
        if result.labels:
            features.origins = {k: tuple(result.origins[k]) for k in result.labels}
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return dict(features.attributes.get(LABEL_SET, {}))


SOURCE = LocalSource()
