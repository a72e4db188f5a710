"""A small sampling profiler for our nfd-master (no py-spy here, and cProfile sees one thread).

``python bench/sampling.py OUT.json [nfd-master arguments...]`` runs nfd-master's console
entry in this process; a daemon thread takes every thread's stack every 5 ms
(``sys._current_frames``) and counts, for each thread the kernel shows running (state R
in /proc/self/task), the innermost frame of our code (nfd/) and the innermost Python frame;
threads blocked in I/O, locks or sleeps are left out. Every 5 s and at exit it writes
the counts to OUT.json. Used by ``bench_nodefeature_scale --profile-ours``; its figures
are not those of the plain run.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType


def _running(tid: int | None) -> bool:
    """The kernel's view: is this thread on a CPU or runnable (state R)?"""
    if tid is None:
        return False
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "R"


def _where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{code.co_name}"


def main() -> int:
    out = Path(sys.argv[1])
    sys.argv = ["nfd-master", *sys.argv[2:]]
    ours: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    samples = 0

    def dump() -> None:
        doc = {
            "samples": samples,
            "interval_s": 0.005,
            "ours": ours.most_common(40),
            "leaf": leaf.most_common(40),
        }
        out.write_text(json.dumps(doc, indent=1))

    def sample() -> None:
        nonlocal samples
        me = threading.get_ident()
        last_dump = time.monotonic()
        while True:
            time.sleep(0.005)
            native = {t.ident: t.native_id for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me or not _running(native.get(ident)):
                    continue
                samples += 1
                leaf[_where(frame)] += 1
                f: FrameType | None = frame
                while f is not None and "/nfd/" not in f.f_code.co_filename:
                    f = f.f_back
                ours[_where(f) if f is not None else "(outside nfd)"] += 1
            if time.monotonic() - last_dump > 5:
                dump()
                last_dump = time.monotonic()

    atexit.register(dump)
    threading.Thread(target=sample, daemon=True, name="sampler").start()
    from nfd.cli.master import console_main

    return int(console_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
