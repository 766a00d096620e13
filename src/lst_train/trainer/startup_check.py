"""`lst-train train --check`: the start-up checks every rank makes, made once before a launcher starts the ranks, so a
bad path or a diverged run stops with one line instead of once per rank and per torchrun restart."""

from lst_train.config import Config
from lst_train.data.dataset import resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.evaluation.during_training import check_evaluation_paths
from lst_train.trainer.divergence import refuse_if_diverged


def check_startup(cfg: Config) -> None:
    """Raises ConfigError for a path that matches nothing (data sources, tokenizer, codec weights, evaluation sets and
    validation sources) or a codec / vocabulary mismatch, and NonFiniteSteps for a run stopped by divergence."""
    refuse_if_diverged(cfg.run_dir)
    spec = LoaderSpec.from_recipe(cfg)
    resolve_shards(spec)
    check_evaluation_paths(cfg.evaluation, spec)
