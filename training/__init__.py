"""The producer side of qpm-zoo: data, dense training, statistics, assignment, fine-tuning,
metrics and publishing. Run from a clone: `python -m training COMMAND ...`.

    cli.py            the command registry (COMMANDS) behind `python -m training`
    commands/         one module per command: add_arguments(parser) and run(args)
    pipeline.py       FitRun: orders the stages of a fit in one run folder
    stage_cache.py    caches and resumes stages (keys from the config sections they read)
    stages/           one module per stage, each a function of a StageContext → a summary
    config.py         the fit config (pydantic), config_files.py reads YAML/TOML files
    data/             datasets (the known-concept generator, CUB, Cars, ...) and their config
    nn/               dense model, feature diversity loss, SGD loop, pretrained backbones
    statistics.py     A, R, b, μ, σ for the assignment; solver/ solves it (docs/method.md §3)
    qsenn/            Q-SENN's feature selection and quantised sparse layer (docs/method.md §5)
    metrics/          the papers' metrics; model_metrics.py computes them for one model
"""
