"""local source: feature files in features.d and hook programs in source.d.

Feature files follow upstream (v0.15+): ``key`` or ``key=value`` lines,
``#`` comments, the directives ``# +expiry-time=<RFC3339>``, ``# +no-label``
and ``# +no-feature``, hidden files ignored, files over 64 KiB skipped. Keys
are kept as written (an unprefixed key stays unprefixed; the master adds the
default namespace). Results: attribute sets ``local.label`` (published as
labels) and ``local.feature`` (raw features only).

Hooks differ from upstream on purpose (upstream ran them with no limits and
dropped them in v0.17): hooks are on by default (``hooksEnabled: false``
turns them off); each runs with no arguments, no stdin, a clean environment
(only PATH), in its own process group, with a timeout (``hookTimeout``,
default 10s) after which the whole group is killed, and an output cap
(``hookOutputLimit``, default 64 KiB). A hook that fails, hangs or overflows
costs only its own features, and is logged with its name and exit status.

Directories are container paths, not under the host prefix, as upstream
mounts them (``featuresDir``, ``hooksDir``; ``--features-dir``,
``--hooks-dir``).
"""

from __future__ import annotations

import os

from nfd.features import Features
from nfd.log import get_logger
from nfd.record import Record
from nfd.sources import Source, SourceContext

# datetime, subprocess, selectors, signal and time are imported where they are
# needed: most nodes have no feature files and no hooks, and these modules
# were a large part of the worker's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

log = get_logger(__name__)

DEFAULT_FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
DEFAULT_HOOKS_DIR = "/etc/kubernetes/node-feature-discovery/source.d"
DEFAULT_HOOK_TIMEOUT = 10.0
MAX_FILE_SIZE = 64 * 1024
DEFAULT_HOOK_OUTPUT_LIMIT = 64 * 1024
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How much of a hook's stderr is kept for the log.
STDERR_LIMIT = 16 * 1024

DIRECTIVE_PREFIX = "# +"
FEATURE_SET = "local.feature"
LABEL_SET = "local.label"


class LocalError(ValueError):
    """A feature file or hook that could not be used; the message names it."""


class ParsedFeatures(Record):
    """Features, labels and warnings of feature files or hooks."""

    __slots__ = ("features", "labels", "warnings")

    def __init__(
        self,
        features: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.features: dict[str, str] = {} if features is None else features
        self.labels: dict[str, str] = {} if labels is None else labels
        self.warnings: list[str] = [] if warnings is None else warnings


def _now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Go's time.RFC3339 (``2006-01-02T15:04:05Z07:00``, fractional seconds allowed)."""
    from datetime import datetime

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


def _visible_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        log.warning("local: cannot list %s: %s", directory, err.strerror)
        return []
    paths = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            paths.append(path)
    return paths


def read_feature_files(directory: str, now: datetime | None = None) -> ParsedFeatures:
    """All feature files of ``directory`` in name order; later files win."""
    total = ParsedFeatures()
    for path in _visible_files(directory):
        try:
            size = os.path.getsize(path)
            if size > MAX_FILE_SIZE:
                total.warnings.append(
                    f"{path}: {size} bytes is over the {MAX_FILE_SIZE} byte limit, file skipped"
                )
                continue
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_SIZE + 1)
        except OSError as err:
            total.warnings.append(f"{path}: cannot read: {err.strerror}")
            continue
        if len(data) > MAX_FILE_SIZE:
            total.warnings.append(f"{path}: over the {MAX_FILE_SIZE} byte limit, file skipped")
            continue
        text = _decode(data)
        parsed = parse_feature_text(text, path, now)
        _merge(total, parsed, path)
    return total


def _merge(total: ParsedFeatures, parsed: ParsedFeatures, origin: str) -> None:
    for key in parsed.labels.keys() & total.labels.keys():
        log.debug("local: %s overrides label %s", origin, key)
    total.features.update(parsed.features)
    total.labels.update(parsed.labels)
    total.warnings.extend(parsed.warnings)


# -- hooks -------------------------------------------------------------------


class HookResult(Record):
    """What one hook run produced."""

    __slots__ = ("path", "returncode", "stdout", "stderr", "timed_out", "overflowed", "error")

    def __init__(
        self,
        path: str,
        returncode: int | None,
        stdout: bytes = b"",
        stderr: bytes = b"",
        timed_out: bool = False,
        overflowed: bool = False,
        error: str = "",
    ) -> None:
        self.path = path
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.overflowed = overflowed
        self.error = error

    @property
    def ok(self) -> bool:
        return not (self.error or self.timed_out or self.overflowed) and self.returncode == 0


def _kill_group(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_hook(path: str, timeout: float, output_limit: int) -> HookResult:
    """Run one hook under a timeout and an output cap; never raises for the hook's faults."""
    import selectors
    import subprocess
    import time

    try:
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": HOOK_PATH},
            cwd=os.path.dirname(path) or ".",
            start_new_session=True,  # its own process group, killed as a whole
            close_fds=True,
        )
    except OSError as err:
        return HookResult(path, None, error=f"cannot execute: {err.strerror or err}")
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    out, err_buf = bytearray(), bytearray()
    result = HookResult(path, None)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(proc.stderr, selectors.EVENT_READ, "err")
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "out":
                    out += chunk
                    if len(out) > output_limit:
                        result.overflowed = True
                        break
                elif len(err_buf) < STDERR_LIMIT:
                    err_buf += chunk[: STDERR_LIMIT - len(err_buf)]
            if result.overflowed:
                break
        if not result.timed_out and not result.overflowed:
            try:
                result.returncode = proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                result.timed_out = True
    finally:
        selector.close()
        # Kill the whole group: on timeout/overflow, and any children left behind.
        _kill_group(proc.pid)
        if result.returncode is None:
            result.returncode = proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    result.stdout = bytes(out[:output_limit])
    result.stderr = bytes(err_buf)
    return result


def run_hooks(
    directory: str, timeout: float, output_limit: int, now: datetime | None = None
) -> ParsedFeatures:
    """Run every executable in ``directory``; each hook's failure costs only its output."""
    total = ParsedFeatures()
    paths = _visible_files(directory)
    if not paths:
        return total
    import time

    for path in paths:
        name = os.path.basename(path)
        if not os.access(path, os.X_OK):
            total.warnings.append(f"hook {name}: not executable, skipped")
            continue
        start = time.monotonic()
        result = run_hook(path, timeout, output_limit)
        elapsed = time.monotonic() - start
        for line in result.stderr.decode("utf-8", "replace").splitlines():
            log.info("hook %s: %s", name, line)
        if result.error:
            total.warnings.append(f"hook {name}: {result.error}")
            continue
        if result.timed_out:
            total.warnings.append(
                f"hook {name}: killed after {timeout:g}s timeout (ran {elapsed:.1f}s), "
                "output discarded"
            )
            continue
        if result.overflowed:
            total.warnings.append(
                f"hook {name}: output over {output_limit} bytes, killed, output discarded"
            )
            continue
        if result.returncode != 0:
            status = (
                f"killed by signal {-result.returncode}"
                if result.returncode is not None and result.returncode < 0
                else f"exit status {result.returncode}"
            )
            total.warnings.append(f"hook {name}: failed with {status}, output discarded")
            continue
        text = _decode(result.stdout)
        _merge(total, parse_feature_text(text, f"hook {name}", now), f"hook {name}")
    return total


# -- the source ----------------------------------------------------------------


def _duration(value: Any, default: float) -> float:
    from nfd.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as err:
        log.warning("sources.local.hookTimeout: %s; using %gs", err, default)
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
            "hookOutputLimit": DEFAULT_HOOK_OUTPUT_LIMIT,
        }

    def discover(self, ctx: SourceContext) -> Features:
        config = {**self.default_config(), **dict(ctx.config)}
        # The time "now" for expiry-time directives is taken when one is met.
        result = read_feature_files(str(config["featuresDir"]))
        if _bool(config["hooksEnabled"]):
            timeout = _duration(config["hookTimeout"], DEFAULT_HOOK_TIMEOUT)
            try:
                limit = int(config["hookOutputLimit"])
            except (TypeError, ValueError):
                limit = DEFAULT_HOOK_OUTPUT_LIMIT
            hooks = run_hooks(str(config["hooksDir"]), timeout, max(limit, 1))
            # Hooks run last, so they override feature files.
            _merge(result, hooks, "hooks")
        for warning in result.warnings:
            log.warning("local: %s", warning)
        features = Features()
        features.add_attributes(FEATURE_SET, result.features)
        features.add_attributes(LABEL_SET, result.labels)
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return dict(features.attributes.get(LABEL_SET, {}))


SOURCE = LocalSource()
