"""launch/slurm.sbatch's USR1 forwarder (the `bash -c` body that srun runs on every node), run here without SLURM: it
signals only live trainers, so pid files left by the workers of a restarted torchrun group cannot take the warning."""

import re
import signal
import socket
import subprocess
import sys

from helpers import REPO

TRAINER = ("import signal, sys, time\n"
           "signal.signal(signal.SIGUSR1, lambda *_: (open(sys.argv[-1], 'w').close(), sys.exit(0)))\n"
           "time.sleep(60)")


def _forwarder() -> str:
    script = (REPO / "launch" / "slurm.sbatch").read_text()
    return re.search(r"""bash -c '(.*?)' _ "\$RUN_DIR" "\$NPROC" &""", script, re.S).group(1)


def test_only_live_trainers_are_signalled(tmp_path):
    run_dir = tmp_path / "it's a run"  # a quote in the path: RUN_DIR is an argument, not spliced into the code
    pids = run_dir / ".pids"
    pids.mkdir(parents=True)
    heard = tmp_path / "heard"
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, "-m", "lst_train", "train", str(heard)])
    other = subprocess.Popen(["sleep", "60"])  # a live process that is no trainer (a reused pid)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    for rank, pid in enumerate((trainer.pid, other.pid, dead.pid)):
        (pids / f"{host}-rank{rank}.pid").write_text(str(pid))
    try:
        # Two ranks expected, one live: it keeps waiting for the second instead of signalling stale pids.
        waiting = subprocess.run(["timeout", "3", "bash", "-c", _forwarder(), "_", str(run_dir), "2"])
        assert waiting.returncode == 124 and trainer.poll() is None and other.poll() is None
        assert subprocess.run(["timeout", "10", "bash", "-c", _forwarder(), "_", str(run_dir), "1"]).returncode == 0
        assert trainer.wait(timeout=10) == 0 and heard.exists()
        assert other.poll() is None
    finally:
        for proc in (trainer, other):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
