"""Pretraining: the trainer, data order, parallelism, checkpoints, optimizer and metrics."""
