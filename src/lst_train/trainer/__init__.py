"""The trainer: FSDP2 parallelization, optimization, checkpoints, metrics, the training loop."""
