"""The node-local spool: segments written ahead survive SIGKILL and are delivered by another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from skywalking.protocol_v6 import encode as v6
from skywalking.reporter.memory import MemoryReporter
from skywalking.reporter.spool import Spool, dump, load
from skywalking.trace.segment import Segment
from tests.protocol.procs import ROOT, clean_env
from tests.unit.test_wire import IDS, golden_v2_segment


def test_a_spooled_segment_encodes_to_the_same_bytes() -> None:
    """dump/load keep everything the encoders read: the restored segment is byte-for-byte the golden one."""
    seq, restored = load(dump(golden_v2_segment(), 7))
    assert seq == 7 and restored.identity == golden_v2_segment().identity
    assert v6.encode(restored, v6.Ids(IDS)) == v6.encode(golden_v2_segment(), v6.Ids(IDS))


def test_only_what_was_not_done_is_recovered(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    segments = [golden_v2_segment() for _ in range(5)]
    seqs = [spool.append(s) for s in segments]
    spool.done([seqs[0], seqs[1], seqs[3]])  # watermark 2; 4 is done but past a gap
    assert spool.pending() == 2
    os.close(spool._fd)  # as if the process died: the lock goes with its descriptor
    got: list[Segment] = []
    assert Spool(str(tmp_path)).recover(got.append) == 3  # 3, 4 (at least once) and 5
    assert [s.segment_id for s in got] == [segments[i].segment_id for i in (2, 3, 4)]
    assert not os.path.exists(spool.path)  # delivered into the recovering process's own spool, then removed


def test_a_live_process_spool_is_left_alone(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.append(golden_v2_segment())
    assert Spool(str(tmp_path)).recover(lambda s: None) == 0 and os.path.exists(spool.path)
    spool.close(delivered_everything=False)  # a stop that could not send: the file stays for the next agent
    rep = MemoryReporter()
    assert Spool(str(tmp_path)).recover(rep.report) == 1 and not os.path.exists(spool.path)


def test_sigkilled_process_loses_nothing_it_finished(tmp_path: Path) -> None:
    """A real process writes segments, truncating the last record half-way as a kill during a write would,
    then is SIGKILLed: every complete record is recovered, the torn one is skipped."""
    code = textwrap.dedent(f"""
        import os, signal
        from skywalking.reporter.spool import Spool
        from tests.unit.test_wire import golden_v2_segment
        spool = Spool({str(tmp_path)!r})
        for _ in range(3):
            spool.append(golden_v2_segment())
        os.write(spool._fd, b"\\x40\\x00\\x00\\x00partial")
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGKILL and "written" in out.stdout, out.stderr
    got: list[Segment] = []
    assert Spool(str(tmp_path)).recover(got.append) == 3
    assert all(s.spans[0].op == "/api" and s.spans[0].refs[0].entry_endpoint == "/portal" for s in got)
