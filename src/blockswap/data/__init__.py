"""Datasets: the registry, on-disk archive formats, augmentation and batching."""
