"""A run that spends a FLOP budget: it ends at the step whose training FLOPs are nearest the budget, and its LR
schedule is laid over FLOPs rather than steps, so that families whose steps cost different FLOPs (an LST's rows
carry more tokens when they carry more speech) end on the same compute with their schedules fully decayed.

Every rank needs the FLOPs of all ranks after every step. They are host numbers (counted by the loader), so they
are summed over a gloo group: no device synchronisation, 8 bytes per step.
"""

import math

import torch
import torch.distributed as dist


class FlopBudget:
    def __init__(self, budget: float, steps: int):
        self.budget = budget
        self.steps = steps
        """The expected number of steps: the schedule's units (its warmup is counted in them)."""
        self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def global_flops(self, local_flops: float) -> float:
        """This step's training FLOPs summed over ranks."""
        flops = torch.tensor([local_flops], dtype=torch.float64)
        dist.all_reduce(flops, group=self.group)
        return float(flops)

    def reached(self, spent: float, steps_done: int) -> bool:
        """Whether to stop after `steps_done` steps that spent `spent` FLOPs: stopping now is nearer the budget
        than one more step of the mean cost would be."""
        return steps_done > 0 and spent + spent / steps_done / 2 >= self.budget

    def schedule_position(self, spent: float) -> int:
        """Where the LR schedule stands after `spent` FLOPs, in steps of the schedule."""
        return min(self.steps, math.floor(spent / self.budget * self.steps))
