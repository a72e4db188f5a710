"""Coverage-guided fuzzing with atheris (libFuzzer for Python) of the parsers.

    .venv/bin/python -m tests.fuzz.atheris_driver TARGET [libFuzzer flags, e.g. -runs=100000]

Targets: see ``TARGETS``. Each one feeds the fuzzer's bytes to a parser; the project's
own errors are expected, anything else is a crash (libFuzzer prints the input and
exits non-zero). ``test_atheris.py`` runs every target for a few thousand inputs; run
longer sessions by hand with a bigger -runs or -max_total_time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["nfd"]):
    from nfd._proto import labeler_pb2, nfdstream_pb2
    from nfd.features import Features
    from nfd.master.core import InvalidUpdate, Master
    from nfd.master.policy import PolicyConfig
    from nfd.rules import RuleError, execute_rules, load_rules
    from nfd.sources import cpu, kernel, local, system
    from nfd.worker.config import ConfigError, parse_config_text


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def feature_file(data: bytes) -> None:
    parsed = local.parse_feature_text(local._decode(data), "fuzz")
    for key, value in parsed.labels.items():
        (key + value).encode("utf-8")


def os_release(data: bytes) -> None:
    system.parse_os_release(_text(data))


def cpuinfo(data: bytes) -> None:
    info = cpu.parse_cpuinfo(_text(data))
    cpu.cpu_model(info, "")
    cpu.cpuid_flag_labels(cpu.cpuid_flags(info), {})


def kconfig(data: bytes) -> None:
    text = _text(data)
    kernel.parse_kconfig(text)
    kernel.parse_osrelease_version(text)
    kernel.parse_modules_builtin(text)


def worker_config(data: bytes) -> None:
    try:
        parse_config_text(data.decode("utf-8", errors="replace"), "fuzz.conf")
    except ConfigError:
        pass


def rules_yaml(data: bytes) -> None:
    try:
        rules = load_rules(data, "fuzz.yaml", worker=True)
    except RuleError:
        return
    # Only rules without templates run: template bombs are tested on their own.
    if not any(r.labels_template or r.vars_template for r in rules):
        execute_rules(rules, Features())


_MASTER = Master(PolicyConfig(), lambda node, item: None)


def grpc_messages(data: bytes) -> None:
    for cls in (labeler_pb2.SetLabelsRequest, nfdstream_pb2.WorkerMessage):
        try:
            msg = cls.FromString(data)
        except Exception:  # noqa: BLE001 - DecodeError (its class differs by backend)
            continue
        if isinstance(msg, nfdstream_pb2.WorkerMessage):
            msg = msg.update
        if len(msg.labels) <= 10_000:
            features = msg.features if msg.HasField("features") else None
            try:
                _MASTER.handle_update(msg.node_name or "fuzz", msg.labels, features)
            except InvalidUpdate:
                pass  # refused as a whole (bad node name, over a budget): the edge answers it


TARGETS: dict[str, Callable[[bytes], None]] = {
    "feature-file": feature_file,
    "os-release": os_release,
    "cpuinfo": cpuinfo,
    "kconfig": kconfig,
    "worker-config": worker_config,
    "rules-yaml": rules_yaml,
    "grpc-messages": grpc_messages,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_driver {{{','.join(TARGETS)}}} [flags]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
