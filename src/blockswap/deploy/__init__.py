"""Deployment budgets: measured per-block latency tables and deployable exports.

`latency` times every block type at every block shape of an architecture on this machine, stores
the table with a fingerprint of the machine, and predicts a network's latency as the sum of its
parts; `latency_validation` measures how far a table's predictions are from end-to-end timings
and how well it ranks networks; `export` writes a student as ONNX or TorchScript without its
training-only outputs.
"""
