"""Process group and device: one code path for a plain `python` process (world of 1) and any torchrun launch."""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("training.device=cuda but no CUDA device is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_world(requested_device: str, timeout_s: float = 1800.0) -> World:
    """Join the torchrun process group (or make a world of one): nccl on GPUs, gloo on CPU; every collective fails
    after `timeout_s` without its peers.

    Under torchrun the group meets in the agent's store under a prefix of its own per restart attempt: with the
    default env:// rendezvous, the workers of a restarted group (`--max-restarts`) read addresses left by the failed
    attempt and gloo's connectFullMesh fails ("Connection refused"; torch 2.13, 2026-11-28)."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(requested_device, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        device_id = device if device.type == "cuda" else None
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            store = dist.PrefixStore(f"lst_train/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}",
                                     dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                                   world_size, is_master=False, timeout=timeout))
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout,
                                    device_id=device_id)
        elif "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, timeout=timeout, device_id=device_id)
        else:  # a plain process: a private store, no network
            store = dist.HashStore()
            dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=timeout)
    return World(rank, world_size, local_rank, device)

