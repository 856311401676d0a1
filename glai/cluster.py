"""Running sweeps on a Slurm cluster through submitit (``hydra/launcher=slurm``; docs/cluster.md).

submitit learns its jobs' states from ``sacct``, which needs Slurm accounting (``slurmdbd`` and a database). On a
cluster without it (the local one of ``scripts/local_slurm.py``, many small clusters) every poll fails: submitit
warned once per poll ("Bypassing sacct error ...", and sacct printed "Slurm accounting storage is disabled") and
only a job's result file told it the job had ended, so a job killed before writing one was waited for forever.
:class:`SqueueFallbackWatcher` asks ``sacct`` once; when it fails it says so once and reads the states from
``squeue`` instead (finished jobs stay listed for the cluster's ``MinJobAge``, 300 s by default), so those
warnings are gone and a failed or cancelled job is reported as such.
"""

from __future__ import annotations

import logging
import subprocess

__all__ = ["SqueueFallbackWatcher", "use_squeue_without_accounting"]

log = logging.getLogger(__name__)

try:
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob
except ImportError:  # submitit is optional at import time (it comes with hydra-submitit-launcher)
    SlurmInfoWatcher = SlurmJob = None

#: The columns submitit's parser reads, in sacct's ``--parsable2`` header spelling.
HEADER = "JobID|State|NodeList"


class SqueueFallbackWatcher(SlurmInfoWatcher or object):
    """submitit's Slurm job watcher, reading ``squeue --states=all`` when ``sacct`` does not work.

    ``sacct_works``: ``None`` until the first poll asks ``sacct -n -X -j <job>``; then ``True`` (submitit's own
    command is used) or ``False`` (``squeue --me --states=all --array`` in sacct's format, one line per array task).
    """

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.sacct_works: bool | None = None

    def _make_command(self):
        command = super()._make_command()
        if command is None:
            return None
        if self.sacct_works is None:
            probe = subprocess.run(["sacct", "-n", "-X", "-j", command[-1]], capture_output=True, text=True)
            self.sacct_works = probe.returncode == 0
            if not self.sacct_works:
                reason = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or [f"exit {probe.returncode}"]
                log.warning("sacct does not work on this cluster (%s): submitit reads the jobs' states from squeue "
                            "instead", reason[0])
        if self.sacct_works:
            return command
        return ["squeue", "--me", "--states=all", "--array", "--noheader", "--format=%i|%T|%N"]

    def read_info(self, string):
        if self.sacct_works is False:
            string = HEADER + "\n" + (string.decode() if isinstance(string, bytes) else string)
        return super().read_info(string)


def use_squeue_without_accounting() -> bool:
    """Make submitit's Slurm jobs use :class:`SqueueFallbackWatcher` (once per process, before any job is
    submitted); ``False`` when submitit is not installed."""
    if SlurmJob is None:
        return False
    if not isinstance(SlurmJob.watcher, SqueueFallbackWatcher):
        SlurmJob.watcher = SqueueFallbackWatcher(delay_s=SlurmJob.watcher._delay_s)
    return True
