"""Run the narrate CLI and kill it (SIGKILL, as the OOM killer or a power cut would) at a known
point: the moment its resume record first says chapter N (from 0) is about to begin, in the
first document that has one (a batch's shorter documents finish). Usage:
python kill_at_chapter.py N narrate-arguments...
"""

import os
import signal
import sys

from narrate.jobs import pipeline
from narrate.cli.core import main

CHAPTER = int(sys.argv.pop(1))
_save = pipeline._Checkpoint.save


def _save_then_die(self) -> None:
    _save(self)
    if self.at[:2] == (CHAPTER, 0) and CHAPTER < len(self.plan.chapters):
        os.kill(os.getpid(), signal.SIGKILL)


pipeline._Checkpoint.save = _save_then_die
main()
