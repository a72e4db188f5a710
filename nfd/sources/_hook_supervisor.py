"""Run one source.d hook and make sure nothing it started outlives it.

Started by nfd.sources.local as ``python -I -S _hook_supervisor.py STATUS_FD HOOK PATH``
(a script by path, importing nothing of nfd, so it starts in a few milliseconds). It
becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process the hook
leaves behind, even one that called setsid to leave the hook's session, is reparented
to it rather than to init. When the hook exits, or when the worker sends SIGTERM
(its timeout) or dies (``PR_SET_PDEATHSIG``), every descendant still there is killed
and reaped. Being a separate process keeps the subreaper role away from the worker,
whose other children (and the processes of a test that calls the source in-process)
are none of the hook's.

It reports on STATUS_FD, one ``word value`` line each: ``pid`` (the hook's), ``error``
(errno of a failed exec), ``exit`` (the hook's status as Popen.returncode gives it),
``leftover`` (how many processes it left running, all killed). Its stdout and stderr
are the hook's; it writes nothing there.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Killing and reaping leftovers gives up after this long (a process stuck in the kernel);
# less than the worker's STOP_GRACE, so the supervisor still reports before it is killed.
CLEANUP_SECONDS = 2.0


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux: the process group kill still applies
        return False


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, state) of every process below ``root``, from one pass over /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:  # no procfs: only the process group kill applies
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append((int(name), fields[0].decode()))
    found, todo = [], [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            found.append((pid, state))
            todo.append(pid)
    return found


def _reap(hook: int, status: list[int]) -> bool:
    """Reap exited children; record the hook's status. False once there are none."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if pid == hook:
            status.append(os.waitstatus_to_exitcode(wait_status))


def _kill_leftovers(hook: int, status: list[int]) -> int:
    """SIGKILL everything below us until nothing is left; the number of live ones killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + CLEANUP_SECONDS
    while _reap(hook, status) and time.monotonic() < deadline:
        for pid, state in _descendants(os.getpid()):
            if state != "Z":  # a zombie is reaped by its parent, or by us once reparented
                killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.005)
    return len(killed - {hook})


def main() -> None:
    status_fd, hook, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.set_inheritable(status_fd, False)

    def report(word: str, value: int) -> None:
        os.write(status_fd, f"{word} {value}\n".encode())

    # SIGTERM (the worker's timeout, or its death) and SIGCHLD are taken by sigwait.
    watched = {signal.SIGTERM, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.setsid()  # its own session and process group, killed as a whole
            os.execve(hook, [hook], {"PATH": path})
        except OSError as err:
            report("error", err.errno or 0)
        finally:
            os._exit(127)
    report("pid", pid)
    status: list[int] = []
    while not status:
        if signal.sigwait(watched) == signal.SIGTERM:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        _reap(pid, status)
    leftover = _kill_leftovers(pid, status)
    if status:
        report("exit", status[0])
    report("leftover", leftover)


if __name__ == "__main__":
    main()
