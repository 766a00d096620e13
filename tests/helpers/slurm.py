"""A real single-node SLURM for tests: its own munged, slurmctld and slurmd under one folder, on free ports, with
fast-requeue settings (bf_interval=1, sched_interval=2: a requeue in ~12 s, measured 2026-11-28). Needs root
and Debian's slurm-wlm + munge (`make test` installs them where it can); `unavailable()` says why not, for a clean
skip."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo")
MUNGE_KEY = Path("/etc/munge/munge.key")


def unavailable() -> str | None:
    missing = [name for name in BINARIES if shutil.which(name) is None and not os.path.exists(f"/usr/sbin/{name}")]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}): apt-get install -y slurm-wlm munge"
    if os.geteuid() != 0:
        return "a test SLURM needs root (slurmd starts jobs as their user)"
    if not MUNGE_KEY.is_file():
        return f"no {MUNGE_KEY}: apt-get install -y munge"
    try:  # the job script's torchrun meets on the node's name, as on a cluster
        socket.gethostbyname(socket.gethostname())
    except OSError:
        return f"this machine's name {socket.gethostname()!r} does not resolve (add it to /etc/hosts)"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """`with SlurmCluster(folder) as cluster:` starts the daemons and waits for the node to be idle; `cluster.env`
    is the environment in which sbatch/scontrol/squeue talk to it (SLURM_CONF)."""

    def __init__(self, folder: Path, cpus: int | None = None):
        self.folder = Path(folder)
        self.cpus = cpus or os.cpu_count() or 1
        self.node = socket.gethostname()
        self.processes: list[subprocess.Popen] = []
        self.conf = self.folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _write_conf(self) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        f = self.folder
        memory = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024)
        self.conf.write_text("\n".join([
            "ClusterName=lsttest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
            "SlurmUser=root", "SlurmdUser=root",
            f"AuthInfo=socket={f / 'munge.socket'},cred_expire=10",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobRequeue=1", "MinJobAge=10", "ReturnToService=2",
            "SchedulerParameters=bf_interval=1,sched_interval=2",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}", f"SlurmdLogFile={f / 'slurmd.log'}",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")

    def _start(self, *command: str) -> None:
        log = open(self.folder / f"{Path(command[0]).name}.out", "w")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def __enter__(self) -> "SlurmCluster":
        for name in ("state", "spool"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        # munged refuses root without --force; a private socket keeps it apart from any system munged.
        self._start(_binary("munged"), "--foreground", "--force", f"--socket={self.folder / 'munge.socket'}",
                    f"--key-file={MUNGE_KEY}", f"--pid-file={self.folder / 'munged.pid'}",
                    f"--log-file={self.folder / 'munged.log'}", f"--seed-file={self.folder / 'munged.seed'}")
        self._wait(lambda: (self.folder / "munge.socket").exists(), "munged")
        self._start(_binary("slurmctld"), "-D", "-i", "-f", str(self.conf))
        self._start(_binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.node)
        self._wait(self._idle, "the node to be idle")
        return self

    def _idle(self) -> bool:
        result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait(self, condition, what: str, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline or any(p.poll() is not None for p in self.processes):
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log"))
                                 if p.is_file())
                raise RuntimeError(f"test SLURM: gave up waiting for {what}\n{logs}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, env=self.env)
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def run(self, *command: str) -> str:
        """A SLURM command against this cluster; its stdout (raises with stderr on failure)."""
        result = subprocess.run(command, capture_output=True, text=True, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def job_state(self, job_id: str) -> str | None:
        """PENDING, RUNNING, ... while SLURM still lists the job; None once it is gone."""
        result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                                env=self.env)
        return result.stdout.strip() or None if result.returncode == 0 else None
