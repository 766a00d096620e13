"""docs/data.md's "From LibriSpeech to training in three commands", run as written (from a copy of the checkout's
recipes and test assets, so the run's outputs stay out of the repository)."""

import re
import subprocess
import sys

from helpers import REPO


def _walkthrough_commands() -> list[str]:
    text = (REPO / "docs" / "data.md").read_text()
    section = text.split("## From LibriSpeech to training in three commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_librispeech_to_training_in_three_commands(tmp_path):
    commands = _walkthrough_commands()
    assert len(commands) == 3
    for name in ("recipes", "tests"):
        (tmp_path / name).symlink_to(REPO / name)
    launcher = tmp_path / ".venv" / "bin" / "lst-train"  # the interpreter under test, wherever its venv is
    launcher.parent.mkdir(parents=True)
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m lst_train "$@"\n')
    launcher.chmod(0o755)
    outputs = []
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout)
    assert "packed 2 utterances" in outputs[0] and "coverage 100.0%" in outputs[0]
    assert "packed set (index.json): 2 utterances" in outputs[1]
    word_patch = re.search(r"\(word ([0-9.]+), silence ([0-9.]+)\)", outputs[1])
    assert word_patch and float(word_patch.group(1)) > 1 and float(word_patch.group(2)) > 1
    assert (tmp_path / "runs" / "librispeech_curriculum" / "finished.json").is_file()
