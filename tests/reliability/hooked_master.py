"""nfd-master with test hooks, for states that no input reaches any more: an update
that never finishes (as a rule the engine cannot end would be) and a serving loop
that never gets control back. Run as ``python -m tests.reliability.hooked_master
<nfd-master flags>``; the hooks are chosen by environment variables:

- NFD_TEST_STUCK_NODE_PREFIX: handle_update never returns for nodes with this prefix;
- NFD_TEST_FREEZE_NODE: an update for this node blocks the event loop forever, spinning
  in Python code or, with NFD_TEST_FREEZE_MODE=sleep, asleep in a system call.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from nfd.cli import master as cli
from nfd.master import core, server


def install() -> None:
    stuck = os.environ.get("NFD_TEST_STUCK_NODE_PREFIX")
    if stuck:
        real_update = core.Master.handle_update
        never = threading.Event()

        def handle_update(self: core.Master, node: str, *args: Any, **kwargs: Any) -> Any:
            if node.startswith(stuck):
                never.wait()
            return real_update(self, node, *args, **kwargs)

        core.Master.handle_update = handle_update  # type: ignore[method-assign]
    freeze = os.environ.get("NFD_TEST_FREEZE_NODE")
    if freeze:
        real_check = server._check_node_name

        sleep = os.environ.get("NFD_TEST_FREEZE_MODE") == "sleep"

        async def check_node_name(context: Any, node: str) -> None:
            if node == freeze:
                while True:
                    if sleep:
                        time.sleep(3600)  # blocked in the kernel, the GIL released
                    # else: pure Python on the loop, as a never-ending template was
            await real_check(context, node)

        server._check_node_name = check_node_name


if __name__ == "__main__":
    install()
    sys.exit(cli.main())
