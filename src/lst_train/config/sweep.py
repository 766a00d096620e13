"""Typed config of a scaling sweep (SWEEP.yaml): families × sizes × FLOP budgets, the control mode, launchers.

Loaded like a recipe: unknown keys, wrong types and inconsistent values are one `ConfigError` line naming the key
and the fix, raised before anything runs.
"""

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lst_train.config.errors import ConfigError, check
from lst_train.config.loader import error_line

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# #SBATCH options the sweep writes itself (from the cell and slurm.*), so slurm.options may not name them.
SLURM_OWN_OPTIONS = ("job-name", "nodes", "gpus-per-node", "time", "output", "partition", "account")


class Control(StrEnum):
    compute = "compute"
    units = "units"
    data = "data"


class FitLoss(StrEnum):
    loss = "loss"
    loss_text = "loss_text"
    loss_speech = "loss_speech"
    val_loss = "val_loss"
    val_loss_text = "val_loss_text"
    val_loss_speech = "val_loss_speech"


class FitPoints(StrEnum):
    frontier = "frontier"
    all = "all"


class Accuracy(StrEnum):
    accuracy_mean = "accuracy_mean"
    accuracy_sum = "accuracy_sum"


@dataclass
class FamilyConfig:
    name: str = ""
    """Name in tables and plots, e.g. baseline, lst-static4, lst-curriculum (letters, digits, . _ -)."""
    recipe: str = ""
    """YAML recipe the family's cells start from: architecture, patching, data, optimizer."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides on the recipe, e.g. [patching.strategy=curriculum]."""
    compare_to: str = ""
    """Family this one is judged against in the demo's held-out verdict (default: the sweep's reference family);
    a family with other speech tokens or another mix names the baseline that sees the same data."""
    tokens_per_patch: float = 0.0
    """Raw tokens per global unit; 0 = measure it from the family's data loader (the baseline's is 1 by
    construction, but measuring also gives the speech seconds per unit)."""


@dataclass
class SizeConfig:
    name: str = ""
    """Name in tables and plots, e.g. 420M."""
    n_layers: int = 0
    """Global transformer blocks."""
    dim: int = 0
    """Global transformer width; LST families get local widths dim / model.patch_slots."""
    n_heads: int = 0
    """Global attention heads."""
    overrides: list[str] = field(default_factory=list)
    """Extra key=value overrides of this size, e.g. [model.encoder.n_heads=8]."""


@dataclass
class SizeRuleConfig:
    dims: list[int] = field(default_factory=list)
    """Global widths, one size each (named d<dim>); empty = no rule, only `sizes`."""
    aspect_ratio: float = 64.0
    """Width per global layer: n_layers = round(dim / aspect_ratio)."""
    head_dim: int = 64
    """Width per global head: n_heads = dim / head_dim."""


@dataclass
class SlurmConfig:
    template: str = "launch/slurm.sbatch"
    """The sbatch script each cell's script is made from (its #SBATCH lines are rewritten per cell)."""
    ranks_per_node: int = 8
    """Training processes per node (one per GPU); nodes per cell = ranks / ranks_per_node."""
    gpus: bool = True
    """Request one GPU per rank (#SBATCH --gpus-per-node); false on CPU-only nodes."""
    time: str = "24:00:00"
    """Time limit of each job (the template requeues and resumes when it runs out)."""
    partition: str = ""
    """#SBATCH --partition (empty = the cluster's default)."""
    account: str = ""
    """#SBATCH --account (empty = none)."""
    options: dict[str, str] = field(default_factory=dict)
    """More #SBATCH options, replacing the template's of the same name, e.g. {qos: high, constraint: h100,
    cpus-per-task: "16"}."""
    submit: str = "sbatch"
    """The submit command."""
    queue: str = "squeue"
    """The queue listing command (`launch` does not submit a cell whose job is queued or running)."""


@dataclass
class SweepConfig:
    name: str = ""
    """Sweep name (slurm job names start with it)."""
    out_dir: str = ""
    """Where the plan (configs/, plan.json, plan.txt), the runs (runs/CELL), results.csv and plots go."""
    families: list[FamilyConfig] = field(default_factory=list)
    """Model families: architecture + patching strategy (see FamilyConfig)."""
    sizes: list[SizeConfig] = field(default_factory=list)
    """Explicit global shapes."""
    size_rule: SizeRuleConfig = field(default_factory=SizeRuleConfig)
    """Shapes from a width/depth rule, added after `sizes`."""
    budgets: list[float] = field(default_factory=list)
    """Training FLOP budgets (fwd+bwd, exact counter); one cell per family, size and budget."""
    control: Control = Control.compute
    """'compute': every cell spends its budget (equal FLOPs); 'units': the reference family's steps for every
    family (the published simpler mode: equal global units per step and equal steps); 'data': every family
    consumes the raw tokens the reference family does with its budget."""
    reference: str = ""
    """Family whose steps the 'units' and 'data' modes copy (default: the first baseline family, else the first)."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides applied to every cell before the family's and the size's."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Each cell is trained once per seed (training.seed: the initialisation; data.seed: shard order, interleaving
    and patch choices), named CELL-sSEED when there are several; reports give the mean ± std over seeds."""
    ranks: int = 1
    """Training processes per cell (the global batch is data.batch_size × grad_accum_steps × ranks)."""
    measure_batches: int = 16
    """Loader batches read per measured family (the curriculum is laid over them, so they span it)."""
    speech_token_fraction: float = 0.0
    """Unmeasured families: fraction of raw tokens that are speech, for the speech hours column."""
    frame_rate: float = 12.5
    """Unmeasured families: speech frames per second (Mimi: 12.5), for the speech hours column."""
    warmup_fraction: float = 0.05
    """Warmup steps of each cell as a fraction of its steps."""
    evaluate_at_end: bool = True
    """evaluation.interval=0 and evaluation.at_end=true: configured eval sets and validation run once, at the end."""
    demo_minutes: float = 20.0
    """Minutes of training speech in the corpus `lst-train demo` builds for this sweep (times its --scale);
    ignored by `sweep plan/launch`, which read the recipes' data."""
    fit_loss: FitLoss = FitLoss.loss
    """results.csv column the power law is fitted to: loss, loss_text, loss_speech or val_loss{,_text,_speech}."""
    fit_points: FitPoints = FitPoints.frontier
    """Points of the fit: 'frontier' (per budget, the size with the lowest loss: the compute-optimal frontier; needs
    3 budgets) or 'all' (every finished cell)."""
    accuracy: Accuracy = Accuracy.accuracy_mean
    """Which accuracy to plot: 'accuracy_mean' (length-normalized) or 'accuracy_sum'."""
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    """The slurm executor."""


def sizes_of(cfg: SweepConfig) -> list[SizeConfig]:
    """Explicit sizes, then the rule's."""
    rule = cfg.size_rule
    ruled = [SizeConfig(f"d{dim}", max(1, round(dim / rule.aspect_ratio)), dim, dim // rule.head_dim)
             for dim in rule.dims]
    return list(cfg.sizes) + ruled


def validate_sweep(cfg: SweepConfig) -> None:
    check(bool(NAME.fullmatch(cfg.name)), "name", f"must be a name of letters, digits, . _ -, got {cfg.name!r}")
    check(bool(cfg.out_dir), "out_dir", "must be a directory, e.g. runs/sweeps/demo")
    check(bool(cfg.families), "families", "empty; list at least one {name, recipe}")
    for i, family in enumerate(cfg.families):
        check(bool(NAME.fullmatch(family.name)), f"families[{i}].name",
              f"must be a name of letters, digits, . _ -, got {family.name!r}")
        check(Path(family.recipe).is_file(), f"families[{i}].recipe", f"no file {family.recipe!r}")
        check(family.tokens_per_patch >= 0, f"families[{i}].tokens_per_patch", "must be >= 0 (0 = measure)")
    names = [f.name for f in cfg.families]
    check(len(set(names)) == len(names), "families", f"names must be unique, got {names}")
    check(not cfg.reference or cfg.reference in names, "reference", f"must be one of {names}, got {cfg.reference!r}")
    for i, family in enumerate(cfg.families):
        check(not family.compare_to or family.compare_to in names, f"families[{i}].compare_to",
              f"must be one of {names}, got {family.compare_to!r}")
    rule = cfg.size_rule
    check(rule.aspect_ratio > 0, "size_rule.aspect_ratio", f"must be > 0, got {rule.aspect_ratio}")
    check(rule.head_dim > 0 and all(d > 0 and d % rule.head_dim == 0 for d in rule.dims), "size_rule.dims",
          f"every width must be a positive multiple of size_rule.head_dim={rule.head_dim}, got {rule.dims}")
    sizes = sizes_of(cfg)
    check(bool(sizes), "sizes", "empty; list {name, n_layers, dim, n_heads} or set size_rule.dims")
    for i, size in enumerate(cfg.sizes):
        check(bool(NAME.fullmatch(size.name)), f"sizes[{i}].name",
              f"must be a name of letters, digits, . _ -, got {size.name!r}")
        check(min(size.n_layers, size.dim, size.n_heads) >= 1, f"sizes[{i}]",
              "needs n_layers, dim and n_heads >= 1")
    size_names = [s.name for s in sizes]
    check(len(set(size_names)) == len(size_names), "sizes", f"names must be unique, got {size_names}")
    check(bool(cfg.budgets) and all(b > 0 for b in cfg.budgets), "budgets",
          f"must be a non-empty list of positive FLOP counts, e.g. [1e12, 3e12], got {cfg.budgets}")
    check(bool(cfg.seeds) and len(set(cfg.seeds)) == len(cfg.seeds), "seeds",
          f"must be a non-empty list of distinct integers, e.g. [0, 1, 2], got {cfg.seeds}")
    check(cfg.ranks >= 1, "ranks", f"must be >= 1, got {cfg.ranks}")
    check(cfg.measure_batches >= 1, "measure_batches", f"must be >= 1, got {cfg.measure_batches}")
    check(0 <= cfg.speech_token_fraction <= 1, "speech_token_fraction", "must be in [0, 1]")
    check(cfg.frame_rate > 0, "frame_rate", f"must be > 0, got {cfg.frame_rate}")
    check(cfg.demo_minutes > 0, "demo_minutes", f"must be > 0, got {cfg.demo_minutes}")
    check(0 <= cfg.warmup_fraction < 1, "warmup_fraction", f"must be in [0, 1), got {cfg.warmup_fraction}")
    check(cfg.slurm.ranks_per_node >= 1, "slurm.ranks_per_node", f"must be >= 1, got {cfg.slurm.ranks_per_node}")
    for key in cfg.slurm.options:
        check(bool(re.fullmatch(r"[a-z][a-z-]*", key)) and key not in SLURM_OWN_OPTIONS, f"slurm.options.{key}",
              f"must be an sbatch long option other than {', '.join(SLURM_OWN_OPTIONS)} (set by the sweep), "
              "e.g. qos or cpus-per-task")


def load_sweep(path: str | Path) -> SweepConfig:
    """Read SWEEP.yaml onto the defaults and validate it."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the sweep ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepConfig), raw))
    except OmegaConfBaseException as err:
        raise ConfigError(error_line(err, str(path), raw=raw)) from None
    validate_sweep(cfg)
    return cfg
