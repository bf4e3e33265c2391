"""A worker hands memory back after large batches (glibc's mmap threshold, serving.process).

Each case runs in a fresh interpreter: glibc's heuristic depends on what the process freed
before, and the threshold, once set, stays for the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# After one large block is freed, glibc serves blocks up to its size from the heap; 4 MB arrays
# with small live objects between them then pin the heap, and freeing the arrays gives
# nothing back. Prints the MB the allocator holds from the system (heap + mmapped blocks,
# glibc's mallinfo2) while the arrays live and after they are freed. The allocator's own count,
# not RSS: the kernel may reclaim cold pages of a loaded machine and hide what is held.
FRAGMENT = """
import ctypes, sys, numpy as np
{setup}
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
def held():
    info = mallinfo2()
    return info.arena + info.hblkhd
a = np.ones(16 << 17); del a
base = held()
blocks = []
for _ in range(20):
    blocks.append(np.ones(4 << 17))
    blocks.append(bytearray(4096))  # above pymalloc's 512 bytes: on the C heap
during = held()
blocks = [b for b in blocks if isinstance(b, bytearray)]
print((during - base) >> 20, (held() - base) >> 20)
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's allocator is what is fixed"
)


def _held_and_left_mb(setup: str) -> tuple[int, int]:
    # glibc reads its malloc settings from the environment at start, and any of them turns
    # the threshold's raising off as the fix does: a Dask LocalCluster started by an earlier
    # test leaves MALLOC_TRIM_THRESHOLD_ in os.environ (distributed's pre-spawn-environ)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT.format(setup=setup)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    held, left = out.stdout.split()[-2:]
    return int(held), int(left)


def test_without_the_fix_freed_arrays_stay_resident() -> None:
    held, left = _held_and_left_mb("")
    assert held >= 60 and left >= 60  # the failure mode the fix is for is real here


def test_with_the_fix_freed_arrays_go_back_to_the_system() -> None:
    setup = (
        "from serving.process import fix_malloc_mmap_threshold\nassert fix_malloc_mmap_threshold()"
    )
    held, left = _held_and_left_mb(setup)
    assert held >= 60 and left < 20


def test_a_service_worker_sets_it_when_it_starts() -> None:
    held, left = _held_and_left_mb("import serving.service")
    assert held >= 60 and left < 20
