"""A pack killed with -9 at any moment is finished by the same command: every utterance once, bytes as if never
killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import ASSETS
from lst_train.data.shards import tar_records
from lst_train.data.skips import SkipCounter

N = 16


def _manifest(root: Path) -> Path:
    lines = []
    for i in range(N):
        source = ("0880.flac", "he was not an ill disposed young man") if i % 2 else \
            ("0930.wav", "he might even have been made amiable himself")
        name = f"u{i:02d}.{source[0].split('.')[1]}"
        (root / name).write_bytes((ASSETS / source[0]).read_bytes())
        lines.append(json.dumps({"audio": name, "text": source[1], "speaker": str(i % 3)}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def _pack(manifest: Path, out: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lst_train", "data", "pack", str(manifest), "--out", str(out),
                             "--align", "pocketsphinx", "--shard-size", "120KB", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _keys(out: Path) -> list[str]:
    return [r.name for shard in sorted(out.glob("*.tar")) for r in tar_records(str(shard), SkipCounter())]


def test_killed_mid_pack_the_same_command_completes_the_set(tmp_path):
    manifest = _manifest(tmp_path)
    reference = _pack(manifest, tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    kills = 0
    for instant in (0, 1, 3):  # kill after the first record, and twice more, further along each time
        run = _pack(manifest, tmp_path / "killed", start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            done = list((tmp_path / "killed" / ".pack").glob("shard-*.json"))
            if len(done) > instant:
                os.killpg(run.pid, signal.SIGKILL)  # the whole group: the command and its workers, as a node dies
                kills += 1
                break
            time.sleep(0.02)
        run.wait(timeout=60)
    assert kills >= 2, "the pack finished before it could be killed: give it more work"
    finished = _pack(manifest, tmp_path / "killed")
    assert finished.wait(timeout=300) == 0, finished.stderr.read()
    assert "already done" in finished.stderr.read()
    keys = _keys(tmp_path / "killed")
    assert sorted(keys) == sorted(f"u{i:02d}" for i in range(N)) and len(keys) == N
    reference_shards = {p.name: p.read_bytes() for p in (tmp_path / "reference").glob("*.tar")}
    assert {p.name: p.read_bytes() for p in (tmp_path / "killed").glob("*.tar")} == reference_shards
    assert (json.loads((tmp_path / "killed" / "index.json").read_text())
            == json.loads((tmp_path / "reference" / "index.json").read_text()))
