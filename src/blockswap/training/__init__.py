"""Training: teachers, attention-transfer distillation, the SNIP pruning baseline, checkpoints, data parallelism."""
