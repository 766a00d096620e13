"""`lst-train demo [--scale S] [--out demo_out]`: the whole story on one machine.

1. the offline demo corpus (KJV text, espeak-ng speech with word timings, a BPE file);
2. held-out evaluation sets, spoken: StoryCloze-like stories, sWUGGY / sBLIMP-like word and syntax pairs;
3. the sweep in recipes/sweep_make_demo.yaml (baseline, LST static-4, LST curriculum at equal training FLOPs),
   planned;
4. trained under torchrun (2 ranks by default), streaming the training logs;
5. every family scored in S→S, T→T, S→T, T→S (stories), S→S and T→T (pairs) and by its held-out loss (valid and
   test splits, the same tokens for every family); report.md with the tables and plots.
Re-running reuses what is finished (corpus, evaluation set, finished runs) and resumes an interrupted run.
`--scale` multiplies the corpus, the evaluation set and the FLOP budget.
"""

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from lst_train.corpora.demo_corpus import LAYOUT, build_demo_corpus
from lst_train.data.entropy_fit import fit_entropy_table
from lst_train.data.skips import SkipCounter
from lst_train.demo.evaluate import evaluate_runs, heldout_runs
from lst_train.demo.report import label_rows, run_label, write_report
from lst_train.evaluation.prompts import SETTINGS
from lst_train.corpora.demo_eval import build_demo_eval
from lst_train.sweeps.collect import collect
from lst_train.config.sweep import load_sweep, validate_sweep
from lst_train.sweeps.launch import launch
from lst_train.sweeps.plan import family_config, format_table, plan_sweep, reference_family, write_plan

DEFAULT_SWEEP = "recipes/sweep_make_demo.yaml"  # relative to the repository root, like the recipes it names
EVAL_ITEMS = 40
PAIRS_PER_STORY = 4  # pairs of each kind per story: a pair is two short segments, a story five long ones
PAIR_KINDS = ("lexical", "syntax")  # pairs_KIND.jsonl of the evaluation set
PAIR_SETTINGS = ("s2s", "t2t")  # a pair has no context to cross modality from


def _stage(number: int, title: str) -> None:
    print(f"\n=== [{number}/5] {title} ===", flush=True)


def _reusable(path: str, wanted: dict) -> bool:
    """Whether `path`/manifest.json exists and matches `wanted` (anything else is rebuilt from scratch)."""
    manifest = os.path.join(path, "manifest.json")
    if not os.path.isfile(manifest):
        return False
    with open(manifest) as f:
        found = json.load(f)
    return all(found.get(k) == v for k, v in wanted.items())


def demo_corpus(path: str, minutes: float) -> None:
    if _reusable(path, {"minutes": minutes, "layout": LAYOUT}):
        print(f"reusing {path} ({minutes:g} min of speech)")
        return
    shutil.rmtree(path, ignore_errors=True)
    build_demo_corpus(Path(path), minutes=minutes)


def demo_eval_set(path: str, items: int, pairs: int) -> str:
    """The evaluation folder (storycloze_2way.jsonl, pairs_lexical.jsonl, pairs_syntax.jsonl), built or reused."""
    wanted = {"items": items, "pairs": pairs}
    if not _reusable(path, wanted):
        shutil.rmtree(path, ignore_errors=True)
        build_demo_eval(Path(path), n_items=items, n_pairs=pairs)
        with open(os.path.join(path, "manifest.json"), "w") as f:
            json.dump(wanted, f)
    else:
        print(f"reusing {path} ({items} stories, {pairs} pairs of each kind)")
    return path


def fit_entropy_tables(sweep) -> None:
    """Fits the table of each entropy family that names one not yet written (e.g. DEMO_DATA/entropy.safetensors),
    on the sweep's speech through the family's codec, with `lst-train data fit-entropy`'s defaults."""
    for family in sweep.families:
        cfg = family_config(sweep, family)
        path = cfg.patching.entropy_table
        if cfg.model.arch != "lst" or cfg.patching.strategy != "entropy" or os.path.isfile(path):
            continue
        skips = SkipCounter()
        table, documents = fit_entropy_table(cfg.data, cfg.model, skips)
        table.save(path)
        print(f"{family.name}: fitted {path} on {int(table.frames.sum())} frames of {documents} documents (skipped "
              f"{skips.as_dict() or 'nothing'}); patches end after frames above "
              f"{table.patch_threshold(cfg.patching):.4g} nats", flush=True)


def demo_sweep(sweep_file: str, out: str, scale: float, ranks: int, seeds: list[int] | None = None):
    """The sweep file, pointed at this demo's data and output, its budgets times `scale` (and `seeds`, if given,
    instead of its own). DEMO_DATA in an override stands for the corpus directory (e.g. its units.safetensors)."""
    sweep = load_sweep(sweep_file)
    data = os.path.join(out, "data")

    def located(overrides: list[str]) -> list[str]:
        return [item.replace("DEMO_DATA", data) for item in overrides]

    families = [dataclasses.replace(f, overrides=located(f.overrides)) for f in sweep.families]
    speech, text = f"'{data}/speech/*.tar'", f"'{data}/text/*.jsonl.zst'"
    # A third of the training tokens each: interleaved, speech only, text.
    sources = (f"[{{kind: speech, path: {speech}, weight: 1.0, sequence: interleaved}}, "
               f"{{kind: speech, path: {speech}, weight: 1.0, sequence: speech}}, "
               f"{{kind: text, path: {text}, weight: 1.0}}]")
    overrides = [f"data.sources={sources}", f"data.tokenizer={data}/tokenizer.tiktoken",
                 f"data.cache_dir={os.path.join(out, 'cache')}"]
    sweep = dataclasses.replace(sweep, out_dir=os.path.join(out, "sweep"), ranks=ranks, families=families,
                                budgets=[b * scale for b in sweep.budgets],
                                overrides=located(sweep.overrides) + overrides,
                                seeds=seeds or sweep.seeds)
    validate_sweep(sweep)
    return sweep


def run_demo(out: str, scale: float = 1.0, ranks: int = 2, sweep_file: str = DEFAULT_SWEEP,
             seeds: list[int] | None = None, minutes: float | None = None) -> str:
    """Runs every stage; returns the report's path. `minutes` of training speech (default: the sweep file's
    demo_minutes times `scale`)."""
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    sweep = demo_sweep(sweep_file, out, scale, ranks, seeds)
    minutes = minutes or round(max(1.0, sweep.demo_minutes * scale), 1)
    _stage(1, f"demo corpus: {minutes:g} min of speech, KJV text")
    demo_corpus(os.path.join(out, "data"), minutes)
    n_items = max(4, round(EVAL_ITEMS * scale))
    n_pairs = PAIRS_PER_STORY * n_items
    _stage(2, f"evaluation sets: {n_items} held-out stories, {n_pairs} word and {n_pairs} syntax pairs, spoken")
    eval_dir = demo_eval_set(os.path.join(out, "eval"), n_items, n_pairs)
    _stage(3, "plan: equal training FLOPs per family (exact counter)")
    fit_entropy_tables(sweep)
    plan = plan_sweep(sweep)
    write_plan(plan)
    table = format_table(plan)
    print(table, flush=True)
    _stage(4, f"train: {len(plan.cells)} runs, {ranks} rank(s) each under torchrun")
    launches = launch(plan, "torchrun" if ranks > 1 else "local", stream=True)
    failed = [x.cell.name for x in launches if x.state == "failed"]
    if failed:
        raise SystemExit(f"lst-train demo: training failed for {failed}; see {sweep.out_dir}/runs/CELL/launch.log")
    rows = label_rows(collect(sweep))
    for row, cell in zip(rows, plan.cells):
        row["run_dir"] = cell.run_dir
    _stage(5, "evaluate S→S, T→T, S→T, T→S, the pairs and the held-out loss, write the report")
    runs = {run_label(row): cell.run_dir for row, cell in zip(rows, plan.cells)}
    pairs = evaluate_runs(runs, {"stories": (os.path.join(eval_dir, "storycloze_2way.jsonl"), tuple(SETTINGS)),
                                 **{kind: (os.path.join(eval_dir, f"pairs_{kind}.jsonl"), PAIR_SETTINGS)
                                    for kind in PAIR_KINDS}})
    accuracies = pairs.pop("stories")
    splits = {split: os.path.join(out, "data", split) for split in ("valid", "test")}
    heldout = heldout_runs(runs, splits)
    with open(os.path.join(out, "heldout.json"), "w") as f:
        json.dump(heldout, f, indent=1)
    minutes_taken = (time.perf_counter() - start) / 60
    header = [f"Scale {scale:g}: {minutes:g} min of speech, {n_items} evaluation stories, {ranks} rank(s) per run, "
              f"{os.cpu_count()} CPU cores; the whole demo took {minutes_taken:.1f} min.",
              f"Families: {', '.join(f.name for f in sweep.families)}; seeds: {', '.join(map(str, sweep.seeds))}; "
              f"control: {sweep.control} "
              f"(budget {', '.join(f'{b:.3g}' for b in sweep.budgets)} FLOPs)."]
    tensorboard = f"tensorboard --logdir {os.path.join(sweep.out_dir, 'runs')}"
    reference = reference_family(sweep)
    references = {f.name: f.compare_to or reference for f in sweep.families}
    report = write_report(out, header, table, rows, accuracies, heldout, 2, reference, tensorboard, references,
                          pairs)
    print(f"\nreport: {report}\nTensorBoard logs: {os.path.join(sweep.out_dir, 'runs')}/*/tb — view them with\n"
          f"  .venv/bin/{tensorboard}\nthen open http://localhost:6006")
    return report
