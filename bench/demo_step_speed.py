"""Training speed of the `make demo` families on this machine's CPU, side by side in one run: speech seconds per
second of training (forward, backward, AdamW) for the baseline and each LST family at the demo's own shapes
(the sweep's size, local width = global / k) and data mix, one process, one thread (as each demo rank runs).

Prints ms per step, speech seconds/s, tokens/s and achieved GFLOP/s (exact counter) per family, then each LST
family's speech-seconds ratio to the baseline. The loader's time is not included (batches are read first).

    python bench/demo_step_speed.py [--data DIR] [--steps 10] [--sweep recipes/sweep_make_demo.yaml] [key=value ...]
"""

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import torch

from lst_train.corpora.demo_corpus import build_demo_corpus
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.demo.pipeline import demo_sweep
from lst_train.loss import loss_sums, targets_of
from lst_train.model import build_model
from lst_train.sweeps.plan import cell_config, plan_sweep


def family_speed(cfg, n_steps: int) -> dict:
    cfg.data.num_workers = 0
    spec = LoaderSpec.from_recipe(cfg)
    batches = list(itertools.islice(build_dataloader(spec), n_steps + 2))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch):
        per_token = model(batch.tokens, batch.patch_lengths, batch.closed_early, targets_of(batch.labels))
        sums = loss_sums(per_token, batch.labels, model.vocab)
        (sums.total / sums.n_total).backward()
        optimizer.step()
        optimizer.zero_grad()

    for batch in batches[:2]:  # warm-up: allocator, first-call overheads
        step(batch)
    start = time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    seconds = time.perf_counter() - start
    timed = batches[2:]
    return {"ms_per_step": 1000 * seconds / n_steps,
            "speech_s_per_s": sum(float(b.row_stats["speech_seconds"].sum()) for b in timed) / seconds,
            "tokens_per_s": sum(float(b.row_stats["tokens"].sum()) for b in timed) / seconds,
            "gflops_per_s": sum(b.flops for b in timed) / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a demo corpus (lst-train data build-demo); default: build 3 minutes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sweep", default="recipes/sweep_make_demo.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every family")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:  # the demo sweep reads OUT/data
            os.symlink(os.path.abspath(args.data), Path(tmp) / "data")
        else:
            build_demo_corpus(Path(tmp) / "data", minutes=3.0)
        sweep = demo_sweep(args.sweep, tmp, scale=1.0, ranks=1)
        sweep.overrides += args.overrides
        plan = plan_sweep(sweep)
        cells = {c.family: c for c in plan.cells if c.budget == plan.cells[0].budget and
                 c.size == plan.cells[0].size}
        results = {name: family_speed(cell_config(plan, cell), args.steps) for name, cell in cells.items()}
    print(f"{'family':<16}{'ms/step':>9}{'speech s/s':>12}{'tokens/s':>10}{'GFLOP/s':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['ms_per_step']:>9.0f}{r['speech_s_per_s']:>12.1f}{r['tokens_per_s']:>10.0f}"
              f"{r['gflops_per_s']:>9.1f}")
    base = next(name for name, cell in cells.items() if cell.arch == "baseline")
    for name, cell in cells.items():
        if cell.arch == "lst":
            ratio = results[name]["speech_s_per_s"] / results[base]["speech_s_per_s"]
            print(f"{name} / {base}: speech seconds per second {ratio:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
