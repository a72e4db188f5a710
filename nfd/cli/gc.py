"""``nfd-gc``: upstream v0.19's garbage collector command (``-gc-interval``, ``-kubeconfig``,
``-port``, ``-list-size``, klog's flags); the work is nfd/master/gc.py."""

from __future__ import annotations

import argparse
import logging
import sys

from nfd import __version__
from nfd.master.gc import (
    DEFAULT_INTERVAL,
    DEFAULT_LIST_SIZE,
    DEFAULT_PORT,
    Daemon,
    GarbageCollector,
    GcMetrics,
)

log = logging.getLogger("nfd-gc")


def _duration(text: str) -> float:
    from nfd.durations import parse_duration

    try:
        return float(parse_duration(text))
    except Exception as err:  # noqa: BLE001 - argparse reports it with the flag's name
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    from nfd.cli.flags import FlagParser
    from nfd.cli.upstream_flags import add_klog_flags

    p = FlagParser(prog="nfd-gc", description="NFD garbage collector (upstream's nfd-gc)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--gc-interval",
        type=_duration,
        default=DEFAULT_INTERVAL,
        help="interval between cleanup of obsolete api objects (Go duration, default 1h)",
    )
    p.add_argument("--kubeconfig", default="", help="Kubeconfig to use")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="Port which metrics and healthz endpoints are served on",
    )
    p.add_argument(
        "--list-size",
        type=int,
        default=DEFAULT_LIST_SIZE,
        help="the pagination size used when listing node features",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_klog_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from nfd.cli.upstream_flags import klog_warnings

    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for warning in klog_warnings(args):
        log.warning("%s", warning)
    if args.gc_interval <= 0:
        log.error("-gc-interval must be > 0")
        return 2
    if args.list_size < 0:
        log.error("-list-size must be >= 0")
        return 2
    if not 0 < args.port < 65536:
        log.error("-port %d: not a port", args.port)
        return 2
    from nfd.master.kube import NodeWatcher, load_api_client
    from nfd.metrics_http import serve_http

    metrics = GcMetrics()
    try:
        server = serve_http(args.port, metrics.registry, thread_name="nfd-gc-http")
    except OSError as err:
        log.error("cannot serve on port %d: %s", args.port, err)
        return 1
    api_client = load_api_client(args.kubeconfig or None)
    daemon = Daemon(
        GarbageCollector(api_client, metrics, list_size=args.list_size), args.gc_interval
    )
    watcher = NodeWatcher(api_client, lambda names: None, lambda name: None, daemon.node_deleted)
    watcher.start()
    log.info(
        "nfd-gc %s: every %.0fs, metrics and /healthz on :%d",
        __version__,
        args.gc_interval,
        args.port,
    )
    import signal

    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    try:
        daemon.run()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        server.shutdown()
    return 0


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
