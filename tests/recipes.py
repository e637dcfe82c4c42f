"""The tiny fit recipe the end-to-end and torchrun tests share: the known-concept data at 48 px,
a test ResNet, every stage in seconds."""

TINY = {
    "seed": 0,
    "data": {
        "name": "concepts",
        "concepts": {
            "num_classes": 5,
            "concepts_per_class": 3,
            "pool_size": 8,
            "image_size": 48,
            "train_size": 400,
            "test_size": 150,
        },
    },
    "model": {
        "backbone": "test_resnet",
        "reduced_strides": True,
        "input_size": 48,
        "crop_pct": 1.0,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    },
    "dense": {
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.05,
        "classifier_lr": 0.05,
        "step_size": 2,
        "augment": "none",
    },
    "assignment": {"n": 8, "k": 3, "time_limit": 30},
    "finetune": {"epochs": 1, "batch_size": 32, "lr": 0.01, "augment": "none"},
    "qsenn": {"rounds": 2, "later_epochs": 1, "path_steps": 10},
    "runtime": {"eval_batch_size": 64},
}
