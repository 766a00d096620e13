"""Scaling sweeps: planning at equal FLOPs / units / data, real tiny cells launched, skipped and resumed through the
CLI, results collected, power-law fits and plots."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml

from helpers import RECIPES, REPO
from helpers.data import WORDS, units_corpus
from lst_train.cli import main
from lst_train.config import ConfigError
from lst_train.config.sweep import load_sweep, validate_sweep
from lst_train.sweeps.collect import read_csv
from lst_train.sweeps.fit import fit_power_law
from lst_train.sweeps.plan import cell_config, plan_sweep
from lst_train.sweeps.plot import fit_points, plot

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=2, samples_per_shard=10)


def _write_sweep(path: Path, corpus, **fields) -> Path:
    data = [f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
            f"data.tokenizer={corpus['tokenizer']}", "data.sources[1].weight=0.25", "data.codec.kind=units",
            "data.seq_units=64", "data.batch_size=2", "training.log_interval=1", "checkpoint.interval=2"]
    sweep = {"name": "t", "out_dir": str(path.parent / "out"),
             "families": [{"name": "baseline", "recipe": str(RECIPES / "debug_cpu_baseline.yaml")},
                          {"name": "lst-static4", "recipe": str(RECIPES / "debug_cpu.yaml"),
                           "overrides": ["patching.strategy=static", "patching.size=4"]}],
             "sizes": [{"name": "g32", "n_layers": 1, "dim": 32, "n_heads": 2}],
             "budgets": [1e12], "overrides": data + fields.pop("overrides", []), "measure_batches": 4, **fields}
    path.write_text(yaml.safe_dump(sweep))
    return path


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "lst_train", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=500)


def _by(plan, family, budget):
    return next(c for c in plan.cells if c.family == family and c.budget == budget)


def test_compute_control_gives_equal_flops_across_families(corpus, tmp_path):
    sweep = load_sweep(_write_sweep(tmp_path / "s.yaml", corpus, budgets=[2e11, 1e12],
                                    size_rule={"dims": [32, 64], "aspect_ratio": 32, "head_dim": 16}))
    plan = plan_sweep(sweep)
    assert [c.size for c in plan.cells][::4] == ["g32", "d32", "d64"]
    for size in ("g32", "d32", "d64"):
        for budget in (2e11, 1e12):
            cells = [c for c in plan.cells if c.size == size and c.budget == budget]
            assert {c.family for c in cells} == {"baseline", "lst-static4"}
            assert all(abs(c.flops / budget - 1) < 0.01 for c in cells), [(c.name, c.flops) for c in cells]
            # Equal FLOPs does not mean equal steps: the families cost differently per step.
            assert cells[0].steps != cells[1].steps
    lst = _by(plan, "lst-static4", 1e12)
    assert lst.tokens_per_step > 1.2 * lst.units_per_step  # speech patches of up to 4 tokens, mostly speech


def test_seeds_give_one_run_per_seed_with_its_own_init_and_data_order(corpus, tmp_path):
    sweep = load_sweep(_write_sweep(tmp_path / "s.yaml", corpus, seeds=[3, 5]))
    plan = plan_sweep(sweep)
    assert [c.name for c in plan.cells] == ["baseline-g32-C1e12-s3", "baseline-g32-C1e12-s5",
                                            "lst-static4-g32-C1e12-s3", "lst-static4-g32-C1e12-s5"]
    for cell in plan.cells:
        cfg = cell_config(plan, cell)
        assert cfg.training.seed == cfg.data.seed == cell.seed and cfg.training.flop_budget == cell.budget
    assert plan.cells[0].steps == plan.cells[1].steps, "the plan does not depend on the seed"


def test_the_frontier_averages_seeds_before_choosing_a_size():
    rows = [{"family": "f", "status": "done", "size": size, "budget": 1.0, "flops": 1.0, "loss": loss}
            for size, loss in (("a", 2.0), ("a", 4.0), ("b", 2.5), ("b", 2.9))]
    assert fit_points(rows, "f", "loss", "frontier") == ([1.0], [pytest.approx(2.7)]), "b: mean 2.7 beats a's 3.0"
    assert len(fit_points(rows, "f", "loss", "all")[1]) == 4


def test_units_control_gives_equal_steps_and_units(corpus, tmp_path):
    plan = plan_sweep(load_sweep(_write_sweep(tmp_path / "s.yaml", corpus, control="units")))
    base, lst = _by(plan, "baseline", 1e12), _by(plan, "lst-static4", 1e12)
    assert base.steps == lst.steps and base.units == lst.units
    assert abs(base.flops / 1e12 - 1) < 0.01 and lst.tokens > base.tokens


def test_data_control_gives_equal_raw_tokens_and_reports_the_lst_saving(corpus, tmp_path):
    sweep_file = _write_sweep(tmp_path / "s.yaml", corpus, control="data", measure_batches=16)
    plan = plan_sweep(load_sweep(sweep_file))
    base, lst = _by(plan, "baseline", 1e12), _by(plan, "lst-static4", 1e12)
    assert abs(lst.tokens / base.tokens - 1) <= lst.tokens_per_step / base.tokens
    assert abs(lst.speech_hours / base.speech_hours - 1) < 0.15
    saving = 1 - lst.units / base.units
    assert 0.1 < saving < 0.9 and lst.flops < base.flops
    result = _cli("sweep", "plan", sweep_file)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith(lst.name))
    assert line.split()[-1] == f"{-saving:+.1%}"
    assert "measured over 16 loader batches" in result.stdout


def test_bad_sweep_fails_at_start_with_one_line(corpus, tmp_path, capsys):
    good = yaml.safe_load(_write_sweep(tmp_path / "good.yaml", corpus).read_text())
    cases = [({"budget": [1]}, "budget"), ({"control": "flops"}, "control"),
             ({"budgets": [-1.0]}, "budgets"), ({"families": []}, "families"),
             ({"sizes": [{"name": "x", "n_layers": 1, "dim": 34, "n_heads": 1}]}, "model.encoder.n_heads")]
    for change, key in cases:  # in this process: the console script's exit code is tests/cli's
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**good, **change}))
        assert main(["sweep", "plan", str(tmp_path / "bad.yaml")]) == 2
        stderr = capsys.readouterr().err
        assert len(stderr.strip().splitlines()) == 1 and key in stderr, stderr
    assert main(["sweep", "launch", str(_write_sweep(tmp_path / "r.yaml", corpus, ranks=2)), "--executor",
                 "local"]) == 2
    stderr = capsys.readouterr().err
    assert "ranks" in stderr and "torchrun" in stderr


@pytest.fixture(scope="module")
def launched(corpus, tmp_path_factory):
    """Four real cells (2 families × 2 budgets) with a toy eval set; one interrupted before the launch."""
    root = tmp_path_factory.mktemp("sweep")
    items = root / "items.jsonl"
    with items.open("w") as f:
        for i in range(4):
            endings = [{"text": WORDS[i + 6]}, {"text": WORDS[i + 7]}]
            f.write(json.dumps({"id": str(i), "context": {"text": " ".join(WORDS[i: i + 6])}, "endings": endings,
                                "label": i % 2}) + "\n")
    # 8 measured batches: an LST step's FLOPs swing by ~45% here with the padded token width (rows of 64 units).
    sweep_file = _write_sweep(root / "s.yaml", corpus, budgets=[5e8, 1e9], measure_batches=8,
                              overrides=[f"evaluation.sets=[{{name: toy, path: {items}, settings: [t2t]}}]"])
    assert _cli("sweep", "plan", sweep_file).returncode == 0
    cells = json.loads((root / "out" / "plan.json").read_text())["cells"]
    interrupted = max(cells, key=lambda c: c["steps"])
    result = _cli("train", interrupted["config"], "training.stop_at=2")
    assert result.returncode == 0, result.stderr[-2000:]
    first = _cli("sweep", "launch", sweep_file, "--executor", "local", "--parallel", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    return sweep_file, cells, interrupted, first.stdout


def _metrics(run_dir):
    return [json.loads(l) for l in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def test_launch_resumes_interrupted_cells_and_skips_finished_ones(launched):
    sweep_file, cells, interrupted, out = launched
    assert f"{interrupted['name']}: resumes from step 2" in out
    assert all(f"{c['name']}: starts" in out for c in cells if c is not interrupted)
    assert all(f"{c['name']}: done" in out for c in cells)
    steps = [r["step"] for r in _metrics(interrupted["run_dir"])]
    end = json.loads(Path(interrupted["run_dir"], "finished.json").read_text())
    assert steps == list(range(1, end["step"] + 1))  # continued at 3, nothing repeated, up to its budget
    before = {c["name"]: Path(c["run_dir"], "metrics.jsonl").read_text() for c in cells}
    again = _cli("sweep", "launch", sweep_file, "--executor", "local")
    assert again.returncode == 0, again.stderr
    assert all(f"{c['name']}: finished, skipped" in again.stdout for c in cells)
    assert before == {c["name"]: Path(c["run_dir"], "metrics.jsonl").read_text() for c in cells}


def test_collect_and_plot_real_runs(launched):
    sweep_file, cells, _, _ = launched
    result = _cli("sweep", "collect", sweep_file)
    assert result.returncode == 0 and "4 of 4 cells finished" in result.stdout, result.stdout + result.stderr
    rows = read_csv(str(sweep_file.parent / "out" / "results.csv"))
    assert [r["cell"] for r in rows] == [c["name"] for c in cells]
    for row, cell in zip(rows, cells):
        last = _metrics(cell["run_dir"])[-1]
        assert row["status"] == "done" and row["steps_done"] == last["step"]
        assert row["tokens"] == last["tokens_seen"] > 0
        assert row["flops"] == last["flops_seen"]
        # Each cell stops on its budget: within one mean step of it (these toy steps are ~10% of a budget; the
        # planned steps, from 8 batches, are only the schedule's units).
        assert abs(row["flops"] - cell["budget"]) <= row["flops"] / row["steps_done"]
        assert 0 < row["loss_text"] < 20 and 0 < row["loss_speech"] < 20
        assert row["eval/toy/t2t/accuracy_mean"] == last["eval/toy/t2t/accuracy_mean"]
        assert row["speech_seconds_per_s"] > 0
    result = _cli("sweep", "plot", sweep_file)
    assert result.returncode == 0, result.stderr
    assert "not fitted" in result.stdout  # two budgets: too few points for three parameters
    for name in ("loss_vs_flops.png", "accuracy_vs_flops.png"):
        assert matplotlib.image.imread(sweep_file.parent / "out" / name).ndim == 3
    assert "| lst-static4 |" in (sweep_file.parent / "out" / "summary.md").read_text()


def test_fit_recovers_a_known_power_law():
    flops = np.geomspace(1e15, 1e21, 9)
    exact = fit_power_law(flops, 30.0 * flops ** -0.08 + 1.7)
    assert (exact.a, exact.b, exact.c) == pytest.approx((30.0, 0.08, 1.7), rel=1e-4)
    noisy = 30.0 * flops ** -0.08 + 1.7 + np.random.default_rng(0).normal(0, 0.002, flops.size)
    fit = fit_power_law(flops, noisy)
    assert fit.b == pytest.approx(0.08, rel=0.1) and fit.c == pytest.approx(1.7, abs=0.05)
    assert fit_power_law(flops[:2], noisy[:2]) is None


def test_plot_writes_png_fits_and_summary(corpus, tmp_path):
    sweep = load_sweep(_write_sweep(tmp_path / "s.yaml", corpus))
    Path(sweep.out_dir).mkdir()
    rows = [{"cell": f"{family}-{c:.0e}", "family": family, "size": "big", "status": "done", "budget": c, "flops": c,
             "loss": a * c ** -0.1 + 2.0, "speech_seconds_per_s": 3.0, "eval/toy/s2s/accuracy_mean": 0.5}
            for family, a in (("baseline", 40.0), ("lst", 35.0)) for c in np.geomspace(1e12, 1e14, 5)]
    # A smaller size at each budget, worse: the frontier fit ignores it.
    rows += [{**row, "cell": row["cell"] + "-small", "size": "small", "loss": row["loss"] + 0.5} for row in rows]
    files = plot(sweep, rows)
    for path in (files.loss, files.accuracy):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(path).shape[2] in (3, 4)
    assert files.fits["lst"].a == pytest.approx(35.0, rel=1e-3)
    assert "| lst | 35 | 0.1 | 2 | 5 | 3 |" in Path(files.summary).read_text()


def test_an_error_from_a_family_or_size_names_them(corpus, tmp_path):
    bad_family = load_sweep(_write_sweep(tmp_path / "f.yaml", corpus))
    bad_family.families[1].overrides.append("patching.sise=4")
    with pytest.raises(ConfigError, match=r"^family lst-static4: patching\.sise: Key 'sise'"):
        plan_sweep(bad_family)
    bad_size = load_sweep(_write_sweep(tmp_path / "s.yaml", corpus, sizes=[{"name": "odd", "n_layers": 1, "dim": 33,
                                                                            "n_heads": 3}]))
    with pytest.raises(ConfigError, match=r"^family baseline × size odd: model\.global_transformer\.n_heads"):
        plan_sweep(bad_size)


def test_plot_says_which_loss_no_cell_logged(corpus, tmp_path):
    """A fit_loss column no cell filled (val_loss_* without evaluation.validation): plots and a summary that say
    so, not a matplotlib traceback."""
    sweep = load_sweep(_write_sweep(tmp_path / "s.yaml", corpus, fit_loss="val_loss_speech"))
    Path(sweep.out_dir).mkdir()
    rows = [{"cell": f"lst-{c:.0e}", "family": "lst", "size": "big", "status": "done", "budget": c, "flops": c,
             "loss": 3.0, "val_loss_speech": None} for c in (1e12, 1e13, 1e14)]
    files = plot(sweep, rows)
    assert matplotlib.image.imread(files.loss).ndim == 3 and files.fits["lst"] is None
    assert "No finished cell logged `val_loss_speech`" in Path(files.summary).read_text()


def test_recipes_plan_and_slurm_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    demo = load_sweep(RECIPES / "sweep_demo.yaml")
    assert len(demo.families) * len(demo.sizes) * len(demo.budgets) >= 12
    for path in [*RECIPES.glob("sweep_*.yaml"), *(RECIPES / "science").glob("*.yaml")]:  # every shipped sweep
        validate_sweep(load_sweep(path))
    paper = yaml.safe_load((RECIPES / "sweep_paper.yaml").read_text())
    paper["out_dir"] = str(tmp_path / "paper")
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(paper))
    assert main(["sweep", "plan", str(tmp_path / "paper.yaml")]) == 0
    stdout = capsys.readouterr().out
    assert "baseline-420M-C2e19" in stdout and "lst-static4-1.8B-C4e20" in stdout
    assert main(["sweep", "launch", str(tmp_path / "paper.yaml"), "--executor", "slurm", "--dry-run"]) == 0
    scripts = sorted((tmp_path / "paper" / "slurm").glob("*.sbatch"))
    assert len(scripts) == 32 and capsys.readouterr().out.count("#SBATCH --nodes=4") == 32
    for script in scripts:
        text = script.read_text()
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        assert f"set -- {tmp_path / 'paper' / 'configs' / script.stem}.yaml" in text
        assert f"#SBATCH --job-name=lst_paper-{script.stem}" in text
        assert "#SBATCH --gpus-per-node=8" in text and "export NPROC_PER_NODE=8" in text
    for slurm, error in (({"ranks_per_node": 0}, "slurm.ranks_per_node"), ({"options": {"nodes": "2"}},
                                                                           "slurm.options.nodes")):
        paper["slurm"] = slurm
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(paper))
        with pytest.raises(ConfigError, match=error):
            load_sweep(tmp_path / "bad.yaml")


def test_slurm_scripts_for_cpu_nodes_and_extra_options(corpus, tmp_path):
    sweep_file = _write_sweep(tmp_path / "s.yaml", corpus, ranks=2, slurm={
        "ranks_per_node": 1, "gpus": False, "time": "5", "options": {"cpus-per-task": "1", "qos": "low"}})
    assert main(["sweep", "launch", str(sweep_file), "--executor", "slurm", "--dry-run"]) == 0
    script = (tmp_path / "out" / "slurm" / "baseline-g32-C1e12.sbatch").read_text()
    assert "gpus-per-node" not in script.replace("--gpus-per-node=0", "")
    for line in ("#SBATCH --nodes=2", "#SBATCH --cpus-per-task=1", "#SBATCH --qos=low", "#SBATCH --time=5",
                 "export NPROC_PER_NODE=1"):
        assert line in script.splitlines(), line
    assert script.index("#SBATCH --qos=low") < script.index("set -uo pipefail")


def test_torchrun_executor_runs_cells_with_the_planned_ranks(corpus, tmp_path):
    sweep_file = _write_sweep(tmp_path / "s.yaml", corpus, ranks=2, budgets=[1e9])
    sweep = yaml.safe_load(sweep_file.read_text())
    sweep["families"] = sweep["families"][1:]
    sweep_file.write_text(yaml.safe_dump(sweep))
    result = _cli("sweep", "launch", sweep_file, "--executor", "torchrun")
    assert result.returncode == 0, result.stdout + result.stderr
    cell = json.loads((tmp_path / "out" / "plan.json").read_text())["cells"][0]
    assert "on 2 rank(s)" in Path(cell["run_dir"], "launch.log").read_text()
    last = _metrics(cell["run_dir"])[-1]
    assert last["step"] >= 2 and Path(cell["run_dir"], "finished.json").is_file()
    assert abs(last["flops_seen"] - 1e9) <= last["flops_seen"] / last["step"]  # stopped on the budget
    # The plan counted both ranks' rows in a step, as the trainer does (one rank short would be 2× off; the rest is
    # the padding of these short rows to multiples of 64 tokens, planned from 4 batches of one reader).
    assert last["flops_seen"] == pytest.approx(cell["steps"] * cell["flops_per_step"], rel=0.25)
    assert last["tokens_seen"] == pytest.approx(last["step"] * cell["tokens_per_step"], rel=0.25)
