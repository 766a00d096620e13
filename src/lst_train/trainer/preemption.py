"""SIGTERM / SIGUSR1 ask the run to stop: the current step finishes, every rank agrees, a checkpoint is saved, and
the processes exit 0, so the same command (or a SLURM requeue) continues the run."""

import contextlib
import os
import signal
import socket


def pid_file(pid_dir: str, rank: int) -> str:
    """Where a rank's pid is listed for launch/slurm.sbatch, which forwards SLURM's warning signal to them."""
    return os.path.join(pid_dir, f"{socket.gethostname()}-rank{rank}.pid")


def remove_stale_pid_file(pid_dir: str, rank: int) -> None:
    """At start-up: after a torchrun group restart the killed workers' files stay (SIGKILL, no clean-up) and would name
    dead or reused pids until the new ranks are up."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(pid_file(pid_dir, rank))


class PreemptionFlag:
    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, pid_dir: str, rank: int):
        self.requested = False
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)
        os.makedirs(pid_dir, exist_ok=True)
        self.pid_file = pid_file(pid_dir, rank)
        with open(self.pid_file, "w") as f:
            f.write(str(os.getpid()))

    def _handle(self, signum, _frame) -> None:
        self.requested = True

    def close(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        if os.path.exists(self.pid_file):
            os.remove(self.pid_file)
