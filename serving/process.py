"""The `serve` process and its workers: the port checked before start, the workers tied to it.

BentoML 1.4 runs the circus arbiter inside the `serve` process itself; the arbiter owns the
listening socket and spawns each worker with ``os.setsid()`` (circus/process.py, ``spawn``), so
every worker sits in its own session and process group and inherits a copy of the socket. A
``kill -9`` of `serve` (or of its process group) therefore leaves the workers alive, reparented
to init, still accepting on the port: nothing on the parent's side can prevent that, since
SIGKILL runs no handler. The worker has to notice, hence ``exit_with_parent()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

# The pid of the `serve` process, set by it for the worker processes it starts (serving.cli).
SERVE_PID_ENV = "PARCELRISK_SERVE_PID"

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp
_PARENT_POLL_S = 1.0  # the fallback watchdog's period, where prctl is not available


def exit_with_parent() -> None:
    """In a worker of `parcelrisk serve`: receive SIGTERM when `serve` dies, however it dies.

    A no-op in any other process (the `serve` process itself imports the service too). SIGTERM
    rather than SIGKILL: uvicorn then stops accepting, lets the requests in flight finish (their
    decisions are stored before they are answered) and the shutdown hooks close the stores.
    """
    value = os.environ.get(SERVE_PID_ENV, "")
    if not value.isdigit() or int(value) == os.getpid():
        return  # not a worker of `parcelrisk serve` (or a value no serve wrote)
    # this worker's own children (none today) are not workers: they must not inherit the tie
    os.environ.pop(SERVE_PID_ENV)
    serve_pid = int(value)
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(
            target=_watch_parent, args=(os.getppid(),), name="parcelrisk-parent-watch", daemon=True
        ).start()
    # `serve` may have died between spawning this worker and the line above: then no signal will
    # ever come, the worker is already an orphan
    if os.getppid() != serve_pid and not _is_alive(serve_pid):
        logger.warning("the serve process %d is gone: this worker stops", serve_pid)
        os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal(signum: int) -> bool:
    """Linux's PR_SET_PDEATHSIG: the kernel signals this process when its parent exits.

    The kernel does it, at the parent's exit whatever killed it, with no polling; it survives
    until this process exits (not inherited by forks). False where it is not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    # portable fallback: a worker whose parent died is reparented (to init or a subreaper)
    stopped = threading.Event()
    while not stopped.wait(_PARENT_POLL_S):
        if os.getppid() != parent_pid:
            logger.warning("the serve process %d is gone: this worker stops", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# glibc's mallopt parameter and the value set for it (bytes): see fix_malloc_mmap_threshold.
_M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Allocations of ``threshold`` bytes or more get their own pages, returned when freed.

    glibc serves a large block with ``mmap`` and, when one is freed, raises the threshold to
    its size (up to 32 MB) so that blocks that size come from the heap from then on. A worker
    allocates arrays of every size per batch (features, matrices, the live state's merged
    runs, which grow with the traffic), so after the first large ones they all come from the
    heap, and a heap whose top is held by a small live object cannot shrink. In process
    (1,000-row batches), ``malloc_trim`` handed back all but ~0.3 KB a declaration (what the
    live state holds). Setting the threshold turns the raising off; 1 MiB keeps small arrays
    (a batch's columns) on the heap, where they are cheaper. Measured in process: +25-35 MB
    per 50,000 declarations instead of +66-166 MB and growing, throughput within the noise;
    on the real server, per worker, +300 MB after 535,000 declarations instead of +600 MB
    after 480,000 (docs/RELIABILITY.md).
    False where there is no glibc (nothing to fix there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl or another libc: not glibc's heuristic
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def port_in_use(host: str, port: int) -> str | None:
    """None if `serve` can bind ``host:port``; else one line naming the port and who holds it.

    The socket is bound the way circus binds its own (SO_REUSEADDR), so a port left in
    TIME_WAIT by the previous server counts as free, as it is for circus.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None  # not an IP address: BentoML refuses it with its own message
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return port_in_use_message(host, port)
    return None


def port_in_use_message(host: str, port: int) -> str:
    pids = listening_pids(port)
    if not pids:
        holder = "pid unknown"
    else:
        label = "pid" if len(pids) == 1 else "pids"
        holder = f"{label} {', '.join(map(str, pids))}: {describe_process(pids[0])}"
    return f"parcelrisk serve: port {port} on {host} is in use ({holder})"


def listening_pids(port: int, proc: Path = Path("/proc")) -> list[int]:
    """The pids holding a socket that listens on TCP ``port`` (any address), from /proc.

    Linux only, and only the processes this user may inspect; empty when none is found. Every
    worker of a BentoML server holds the same listening socket, so an orphaned server shows up
    as several pids.
    """
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if any(os.readlink(fd) in targets for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
    return sorted(pids)


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            listening = len(fields) > 9 and fields[3] == _TCP_LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def describe_process(pid: int, limit: int = 120) -> str:
    """The command line of ``pid``, its program shortened to a name, cut at ``limit``."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "command unknown"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "command unknown"
    # one line whatever the arguments hold (a `python -c` script has newlines)
    line = " ".join(" ".join([Path(words[0]).name, *words[1:]]).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
