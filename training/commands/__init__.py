"""The `python -m training` commands, one module each (registered in training.cli.COMMANDS):
`add_arguments(parser)` and `run(args) -> int`; errors are reported by qpm_zoo.commands."""
