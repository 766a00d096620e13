"""`lst-train export RUN_DIR --out DIR`: one consolidated `model.safetensors` + `config.json` from the latest
complete checkpoint, read in a single process; `load_exported(DIR)` rebuilds the model from them."""

import json
import os
import tempfile
import warnings

import torch
import torch.distributed.checkpoint as dcp
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from lst_train.config import Config, load_config
from lst_train.model import build_model
from lst_train.runs import CONFIG, checkpoint_folder, complete_steps


def export_run(run_dir: str, out_dir: str, step: int | None = None) -> str:
    """Write DIR/model.safetensors and DIR/config.json (the full resolved config); returns DIR."""
    cfg = load_config(os.path.join(run_dir, CONFIG))
    steps = complete_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{checkpoint_folder(run_dir)}: no complete checkpoint to export")
    step = steps[0] if step is None else step
    model = build_model(cfg.model, seed=0)
    state = model.state_dict()
    with warnings.catch_warnings():  # reading in one process is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=os.path.join(checkpoint_folder(run_dir), f"step-{step}"), no_dist=True)
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"step": str(step)})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(OmegaConf.to_container(OmegaConf.structured(cfg)), f, indent=1)
    return out_dir


def load_exported(out_dir: str) -> tuple[torch.nn.Module, Config]:
    """The exported model (eval mode, CPU) and its config."""
    with open(os.path.join(out_dir, "config.json")) as f:
        merged = OmegaConf.merge(OmegaConf.structured(Config), json.load(f))
    cfg: Config = OmegaConf.to_object(merged)
    model = build_model(cfg.model, seed=0)
    model.load_state_dict(load_file(os.path.join(out_dir, "model.safetensors")))
    return model.eval(), cfg


def load_for_eval(path: str):
    """An export directory (config.json + model.safetensors), or a run directory's latest checkpoint."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return load_exported(path)
    with tempfile.TemporaryDirectory() as tmp:
        return load_exported(export_run(path, tmp))


__all__ = ["export_run", "load_exported", "load_for_eval"]
