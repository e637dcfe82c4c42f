"""The producer side of qpm-zoo: data, dense training, statistics, assignment, fine-tuning,
metrics and publishing. Run from a clone: `python -m training COMMAND ...`."""
