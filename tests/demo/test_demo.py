"""`make demo`'s pipeline at the smallest scale: corpus, eval set, 3 families under torchrun, evaluation, report."""

import json
import os
import re
import subprocess
import sys

import pytest

from lst_train.corpora import demo_corpus, espeak

from helpers import REPO


try:
    espeak.sample_rate()
    demo_corpus.read_kjv()
except (espeak.EspeakMissing, OSError) as err:
    pytest.skip(f"the demo needs espeak-ng and bible-kjv ({err})", allow_module_level=True)


def test_demo_at_the_smallest_scale_writes_the_whole_report(tmp_path):
    out = tmp_path / "demo_out"
    result = subprocess.run([sys.executable, "-m", "lst_train", "demo", "--scale", "0.01", "--seeds", "0", "1",
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in range(1, 6):
        assert f"=== [{stage}/5]" in result.stdout
    assert re.search(r"lst-static4-\S+: .* lst_train.train: step \d+ \| loss", result.stdout)  # progress streamed
    report = (out / "report.md").read_text()
    families = ("baseline", "lst-static4", "lst-curriculum")
    runs = [f"{family} s{seed}" for family in families for seed in (0, 1)]
    tables = report.split("## Story completion")
    for run in runs:
        assert f"| {run} | " in tables[0] and f"| {run} | " in tables[1]
    for family in families:
        assert len(list((out / "sweep" / "runs").glob(f"{family}-*-s[01]/tb/events.out.tfevents.*"))) == 2
    assert "| - |" not in tables[0]  # every family has every number
    pairs = report.split("## Word and syntax pairs")[1].split("##")[0]
    for run in runs:  # lexical and syntax pairs, each spoken and written: mean / sum accuracy
        cells = re.search(rf"\| {run} \| (.*) \|", pairs).group(1).split(" | ")
        assert len(cells) == 4 and all(re.fullmatch(r"[\d.]+ / [\d.]+", cell) for cell in cells), pairs
    mix = report.split("## Data mix")[1].split("##")[0]
    for run in runs:
        shares = re.search(rf"\| {run} \| (.*) \|", mix).group(1).split(" | ")
        assert len(shares) == 3  # interleaved, speech-only, text: realised share (weight's share)
        for cell in shares:
            realised, wanted = map(float, re.fullmatch(r"([\d.]+) \(([\d.]+)\)", cell).groups())
            assert abs(realised - wanted) < 0.15, mix
    heldout = report.split("## Held-out loss")[1].split("##")[0]
    heldout_json = json.loads((out / "heldout.json").read_text())
    for run in runs:
        cells = re.search(rf"\| {run} \| (.*) \|", heldout).group(1).split(" | ")
        assert len(cells) == 6 and "-" not in cells  # valid and test: per speech second, speech token, text token
        test = heldout_json[run]["test"]["sources"]
        assert float(cells[3]) == pytest.approx(test[0]["nats_per_speech_second"], rel=1e-3)
        assert test[0]["documents"] >= 1 and test[1]["documents"] > 50
    targets = {(r["test"]["sources"][0]["speech_tokens"], r["test"]["sources"][1]["text_tokens"])
               for r in heldout_json.values()}
    assert len(targets) == 1, "every family and seed scored the same held-out targets"
    verdict = report.split("## Verdict")[1].split("##")[0]
    for family in families[1:]:
        line = re.search(rf"- {family} vs baseline, held-out test, 2 seed\(s\), equal training FLOPs: speech "
                         r"([+-][\d.]+) ± ([\d.]+) nats per second of speech .*text ([+-][\d.]+) ± ([\d.]+)", verdict)
        assert line, verdict
        differences = [heldout_json[f"{family} s{seed}"]["test"]["sources"][0]["nats_per_speech_second"]
                       - heldout_json[f"baseline s{seed}"]["test"]["sources"][0]["nats_per_speech_second"]
                       for seed in (0, 1)]
        assert float(line.group(1)) == pytest.approx(sum(differences) / 2, abs=1e-4)
    for plot in ("loss_vs_flops.png", "accuracy.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({plot})" in report
    assert "tensorboard --logdir" in result.stdout and os.path.join(str(out), "sweep", "runs") in result.stdout
    # Re-running reuses everything: no run starts again.
    again = subprocess.run([sys.executable, "-m", "lst_train", "demo", "--scale", "0.01", "--seeds", "0", "1",
                            "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("finished, skipped") == 6
    assert f"reusing {out / 'data'}" in again.stdout and f"reusing {out / 'eval'}" in again.stdout
