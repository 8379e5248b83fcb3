"""Training: teachers, attention-transfer distillation, checkpoints, data parallelism."""
