"""Training: one trainer for every task, optimisers and schedules, checkpoints, distribution."""
