"""`lst-train sweep plan`: one resolved run config per (family, size, budget) cell, with its steps derived from the
exact FLOP counter under the sweep's control mode, and the table that compares the cells."""

import json
import os
from dataclasses import asdict, dataclass

from lst_train.config import Config, ConfigError, load_config, to_yaml
from lst_train.config.sweep import FamilyConfig, SizeConfig, SweepConfig, sizes_of
from lst_train.data.loader_spec import LoaderSpec
from lst_train.flops import param_counts
from lst_train.sweeps.profile import DataProfile, given, measure


@dataclass
class Cell:
    name: str
    family: str
    arch: str
    size: str
    budget: float
    steps: int
    params: dict[str, int]
    """Parameters per stack and 'total'."""
    flops_per_step: float
    tokens_per_step: float
    """Raw (non-pad) tokens per optimizer step, all ranks."""
    units_per_step: int
    """Global units (patches for the LST, tokens for the baseline) per optimizer step, all ranks."""
    speech_seconds_per_step: float
    config: str
    run_dir: str
    seed: int = 0
    """training.seed and data.seed of the run."""

    @property
    def flops(self) -> float:
        return self.steps * self.flops_per_step

    @property
    def tokens(self) -> float:
        return self.steps * self.tokens_per_step

    @property
    def units(self) -> int:
        return self.steps * self.units_per_step

    @property
    def speech_hours(self) -> float:
        return self.steps * self.speech_seconds_per_step / 3600


@dataclass
class Plan:
    sweep: SweepConfig
    cells: list[Cell]
    sources: dict[str, str]
    """Family -> where its tokens per unit come from."""


def family_config(sweep: SweepConfig, family: FamilyConfig, extra: list[str] = (), size: str = "") -> Config:
    """A family's config with the sweep's, the family's and `extra` overrides; an error names the family (and size)
    whose settings caused it, since the key alone may come from any of them."""
    try:
        return load_config(family.recipe, [*sweep.overrides, *family.overrides, *extra])
    except ConfigError as err:
        raise ConfigError(f"family {family.name}{f' × size {size}' if size else ''}: {err}") from None


def _size_overrides(sweep: SweepConfig, family: FamilyConfig, size: SizeConfig) -> list[str]:
    shape = [f"model.global_transformer.n_layers={size.n_layers}", f"model.global_transformer.dim={size.dim}",
             f"model.global_transformer.n_heads={size.n_heads}"]
    model = family_config(sweep, family).model
    if model.arch == "lst":
        if size.dim % model.patch_slots:
            raise ConfigError(f"sizes: {size.name}: dim={size.dim} must be a multiple of model.patch_slots="
                              f"{model.patch_slots} of family {family.name} (local width = dim / patch_slots)")
        local = size.dim // model.patch_slots
        shape += [f"model.encoder.dim={local}", f"model.decoder.dim={local}"]
    return shape + list(size.overrides)


def _profile(sweep: SweepConfig, index: int, family: FamilyConfig) -> DataProfile:
    cfg = family_config(sweep, family)
    if family.tokens_per_patch == 0:
        return measure(LoaderSpec.from_recipe(cfg), sweep.measure_batches)
    if cfg.model.arch == "baseline" and family.tokens_per_patch != 1:
        raise ConfigError(f"families[{index}].tokens_per_patch: a baseline has 1 token per unit; set 1 (or 0 to "
                          f"measure), got {family.tokens_per_patch}")
    return given(family.tokens_per_patch, sweep.speech_token_fraction, sweep.frame_rate, cfg.model.vocab.n_codebooks)


def reference_family(sweep: SweepConfig) -> str:
    """The family whose steps the units and data modes copy."""
    if sweep.reference:
        return sweep.reference
    archs = {f.name: family_config(sweep, f).model.arch for f in sweep.families}
    return next((name for name, arch in archs.items() if arch == "baseline"), sweep.families[0].name)


def budget_label(budget: float) -> str:
    return f"{budget:.3g}".replace("+", "")


def _steps(budget: float, per_step: float, what: str) -> int:
    steps = round(budget / per_step)
    if steps < 1:
        raise ConfigError(f"budgets: {budget:.3g} FLOPs is less than one step of {what} ({per_step:.3g} FLOPs); "
                          "raise the budget or shrink the size")
    return steps


def plan_sweep(sweep: SweepConfig) -> Plan:
    """Every cell with its steps: no file is written and nothing runs (reads a few loader batches to measure)."""
    # Every cell's config is checked before the (slower) measurements.
    configs_by_size = {size.name: {f.name: family_config(sweep, f, _size_overrides(sweep, f, size), size.name)
                                   for f in sweep.families} for size in sizes_of(sweep)}
    profiles = {f.name: _profile(sweep, i, f) for i, f in enumerate(sweep.families)}
    ref = reference_family(sweep)
    cells = []
    for size in sizes_of(sweep):
        configs = configs_by_size[size.name]
        per_step = {}
        for name, cfg in configs.items():
            rows = cfg.data.batch_size * cfg.training.grad_accum_steps * sweep.ranks
            units = rows * cfg.data.seq_units
            profile = profiles[name]
            per_step[name] = (rows * profile.row_flops(cfg.model, cfg.data.seq_units), units,
                              units * profile.tokens_per_unit, units * profile.speech_seconds_per_unit)
        for budget in sweep.budgets:
            ref_steps = _steps(budget, per_step[ref][0], f"{ref} at {size.name}")
            for name, cfg in configs.items():
                flops, units, tokens, speech = per_step[name]
                if sweep.control == "compute":
                    steps = _steps(budget, flops, f"{name} at {size.name}")
                elif sweep.control == "units":
                    steps = ref_steps
                else:
                    steps = max(1, round(ref_steps * per_step[ref][2] / tokens))
                for seed in sweep.seeds:
                    cell = f"{name}-{size.name}-C{budget_label(budget)}" + (f"-s{seed}" if len(sweep.seeds) > 1 else "")
                    cells.append(Cell(cell, name, cfg.model.arch, size.name, budget, steps, param_counts(cfg.model),
                                      flops, tokens, units, speech,
                                      os.path.join(sweep.out_dir, "configs", f"{cell}.yaml"),
                                      os.path.join(sweep.out_dir, "runs", cell), seed))
    return Plan(sweep, cells, {name: p.source for name, p in profiles.items()})


def cell_config(plan: Plan, cell: Cell) -> Config:
    """The resolved run config of a cell: its size, steps, warmup, run_dir, resume and final evaluation."""
    sweep = plan.sweep
    family = next(f for f in sweep.families if f.name == cell.family)
    size = next(s for s in sizes_of(sweep) if s.name == cell.size)
    derived = [f"training.steps={cell.steps}", "training.stop_at=0",
               f"training.warmup_steps={round(sweep.warmup_fraction * cell.steps)}",
               f"run_dir={cell.run_dir}", "checkpoint.resume=auto", f"evaluation.at_end={sweep.evaluate_at_end}",
               f"training.seed={cell.seed}", f"data.seed={cell.seed}"]
    if sweep.control == "compute":  # the run stops on its budget; the planned steps are the schedule's units
        derived.append(f"training.flop_budget={cell.budget}")
    if sweep.evaluate_at_end:
        derived.append("evaluation.interval=0")
    return family_config(sweep, family, _size_overrides(sweep, family, size) + derived, size.name)


def write_plan(plan: Plan) -> None:
    """OUT_DIR/configs/CELL.yaml per cell, plan.json (read by collect) and plan.txt (the table)."""
    out = plan.sweep.out_dir
    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
    for cell in plan.cells:
        with open(cell.config, "w") as f:
            f.write(to_yaml(cell_config(plan, cell)))
    with open(os.path.join(out, "plan.json"), "w") as f:
        json.dump({"control": plan.sweep.control, "sources": plan.sources,
                   "cells": [asdict(c) for c in plan.cells]}, f, indent=1)
    with open(os.path.join(out, "plan.txt"), "w") as f:
        f.write(format_table(plan) + "\n")


def read_plan(out_dir: str) -> list[Cell]:
    path = os.path.join(out_dir, "plan.json")
    if not os.path.isfile(path):
        raise ConfigError(f"out_dir: no {path}; run `lst-train sweep plan SWEEP.yaml` first")
    with open(path) as f:
        return [Cell(**c) for c in json.load(f)["cells"]]


def _count(n: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def format_table(plan: Plan) -> str:
    """One line per cell; 'vs ref' compares FLOPs and global units with the reference family's cell."""
    ref = reference_family(plan.sweep)
    ref_cells = {(c.size, c.budget): c for c in plan.cells if c.family == ref}
    head = (f"{'cell':<34}{'params enc/glob/dec/total':>30}{'FLOPs/step':>11}{'steps':>8}{'FLOPs':>10}"
            f"{'vs budget':>10}{'raw tokens':>11}{'speech h':>9}{'global units':>13}{'FLOPs vs ref':>13}"
            f"{'units vs ref':>13}")
    lines = [f"control: {plan.sweep.control}   reference family: {ref}   ranks per cell: {plan.sweep.ranks}"]
    lines += [f"tokens per unit of {name}: {source}" for name, source in plan.sources.items()]
    lines += [head, "-" * len(head)]
    for c in plan.cells:
        p = c.params
        params = "/".join(_count(p.get(k, 0)) for k in ("encoder", "global_transformer", "decoder", "total"))
        r = ref_cells[(c.size, c.budget)]
        lines.append(f"{c.name:<34}{params:>30}{c.flops_per_step:>11.3g}{c.steps:>8}{c.flops:>10.3g}"
                     f"{c.flops / c.budget - 1:>+10.2%}{c.tokens:>11.3g}{c.speech_hours:>9.3g}{c.units:>13.3g}"
                     f"{c.flops / r.flops - 1:>+13.1%}{c.units / r.units - 1:>+13.1%}")
    return "\n".join(lines)

