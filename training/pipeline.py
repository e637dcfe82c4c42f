"""The QPM training pipeline (method.md §1-§4) as cached stages in one run folder.

DIR/dense/        dense model (FDL) weights and history
DIR/statistics/   A, R, b, μ, σ over the training set (test-time transforms)
DIR/assignment/   the solver's result
DIR/finetune/     fine-tuning history (and its resume state while it runs)
DIR/model/        the final checkpoint: QPM.from_pretrained(DIR/model)
DIR/metrics.json  every metric of the final (and the dense) model
DIR/fit.log       the log; DIR/stages/*.json what finished, with which config
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from qpm_zoo import PreprocessConfig
from qpm_zoo.model import QPM

from .config import FitConfig, FitConfigError, ModelSection, TrainSection
from .dense import DenseClassifier
from .evaluation import SID_K, ModelEvaluation, concept_feature_names, evaluate_model
from .logs import progress
from .loops import evaluate_accuracy, train_phase
from .normalisation import trainable_normalisation
from .pretrained import create_backbone
from .stages import Stage, StageRunner, write_json
from .statistics import AssignmentStatistics, StatisticsAccumulator

log = logging.getLogger("training")

#: what the dense model depends on; a run may reuse another run's dense model only if these agree
DENSE_SECTIONS = ("seed", "data", "model", "dense")


class Transformed(Dataset):
    """A dataset of (PIL image, label) seen through one transform (train and statistics passes
    read the same training images through different transforms)."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def preprocessing_for(model: ModelSection) -> PreprocessConfig:
    """The backbone's timm defaults, overridden by what the config sets explicitly."""
    import timm

    default = PreprocessConfig()
    cfg = timm.models.get_pretrained_cfg(model.backbone)
    base = cfg.to_dict() if cfg is not None else {}
    size = model.input_size
    return PreprocessConfig(
        input_size=(3, size, size),
        interpolation=model.interpolation or base.get("interpolation") or default.interpolation,
        crop_mode=base.get("crop_mode") or default.crop_mode,
        crop_pct=model.crop_pct or base.get("crop_pct") or default.crop_pct,
        mean=tuple(model.mean or base.get("mean") or default.mean),
        std=tuple(model.std or base.get("std") or default.std),
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class FitRun:
    """One run folder and the stages that fill it."""

    def __init__(self, config: FitConfig, out: Path):
        self.config = config
        self.out = Path(out)
        self.runner = StageRunner(self.out, lambda sections: config.fingerprint(*sections))
        self.device = torch.device(config.runtime.device)
        self.preprocessing = preprocessing_for(config.model)
        self._splits: Any = None

    # -- data ----------------------------------------------------------------------------------
    @property
    def splits(self) -> Any:
        if self._splits is None:
            from .data import build_datasets

            self._splits = build_datasets(self.config.data)
            log.info(
                "data: %s, %d classes, %d train / %d test images",
                self.config.data.name,
                len(self._splits.class_names),
                len(self._splits.train),
                len(self._splits.test),
            )
        return self._splits

    def loader(self, split: str, train: bool, section: TrainSection | None = None) -> DataLoader:
        from .data import eval_transform, train_transform

        dataset = self.splits.train if split == "train" else self.splits.test
        if train:
            assert section is not None
            transform = train_transform(self.preprocessing, section.augment)
            batch_size = section.batch_size
        else:
            transform = eval_transform(self.preprocessing)
            batch_size = self.config.runtime.eval_batch_size
        generator = torch.Generator().manual_seed(self.config.seed)
        return DataLoader(
            Transformed(dataset, transform),
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,
            num_workers=self.config.runtime.num_workers,
            worker_init_fn=_seed_worker,
            generator=generator,
            persistent_workers=False,
        )

    # -- stages ----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        dense = Stage("dense", DENSE_SECTIONS, self._dense)
        evaluate = Stage("evaluate", (), self._evaluate)
        if self.config.model_type == "qsenn":
            return [
                dense,
                Stage(
                    "qsenn",
                    ("model_type", "assignment", "qsenn", "finetune"),
                    self._qsenn,
                    outputs=("model",),
                ),
                evaluate,
            ]
        return [
            dense,
            Stage("statistics", (), self._statistics),
            Stage("assignment", ("model_type", "assignment"), self._assignment),
            Stage("finetune", ("finetune",), self._finetune, outputs=("model",)),
            evaluate,
        ]

    def reuse_dense(self, other_run: Path) -> None:
        """Take the finished dense stage of another run folder trained with the same data, model
        and dense settings (e.g. to compare QPM and Q-SENN on the same dense model)."""
        other = StageRunner(Path(other_run), self.runner.fingerprint)
        stages = self.stages()[:1]
        record = other.read_record("dense")
        if record is None:
            raise FitConfigError(f"{other_run}: has no finished dense stage to reuse")
        if record.get("key") != self.runner.keys(stages)["dense"]:
            raise FitConfigError(
                f"{other_run}: its dense model was trained with other data/model/dense settings "
                "than this config; it cannot be reused"
            )
        mine = self.runner.read_record("dense")
        if mine is not None and mine.get("key") == record.get("key"):
            return
        target = self.runner.work_dir("dense")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(other.work_dir("dense"), target)
        self.runner.records_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(other.record_path("dense"), self.runner.record_path("dense"))
        log.info("dense: reused the dense model of %s", other_run)

    def run(self) -> dict[str, dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", self.config.to_dict())
        if self.config.runtime.threads:
            torch.set_num_threads(self.config.runtime.threads)
        return self.runner.run(self.stages())

    def _seed(self, offset: int = 0) -> None:
        seed = self.config.seed + offset
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def _dense_model(self) -> DenseClassifier:
        m = self.config.model
        backbone = create_backbone(m.backbone, m.pretrained, m.reduced_strides, m.kwargs)
        return DenseClassifier(backbone, len(self.splits.class_names), self.config.dense.dropout)

    def load_dense(self) -> DenseClassifier:
        """The finished dense model (random init, then its trained weights from the dense stage)."""
        m = self.config.model
        backbone = create_backbone(m.backbone, False, m.reduced_strides, m.kwargs)
        model = DenseClassifier(backbone, len(self.splits.class_names), self.config.dense.dropout)
        model.load_state_dict(load_file(str(self.runner.work_dir("dense") / "weights.safetensors")))
        return model.to(self.device).eval()

    def _dense(self) -> dict:
        self._seed()
        model = self._dense_model()
        section = self.config.dense
        classifier = list(model.linear.parameters())
        body = [p for name, p in model.named_parameters() if not name.startswith("linear.")]
        groups = [
            {"params": body},
            {"params": classifier, "lr": section.classifier_lr or section.lr},
        ]
        work = self.runner.work_dir("dense")
        history = train_phase(
            model,
            lambda: model.linear.weight,
            groups,
            section,
            self.loader("train", True, section),
            self.loader("test", False),
            self.device,
            work,
            "dense",
            eval_every=max(1, section.epochs // 5),
        )
        accuracy = (
            history[-1].test_accuracy
            if history
            else evaluate_accuracy(model, self.loader("test", False), self.device)
        )
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(work / "weights.safetensors"))
        write_json(work / "history.json", [asdict(r) for r in history])
        (work / "resume.pt").unlink(missing_ok=True)
        return {"test_accuracy": accuracy, "epochs": section.epochs}

    @torch.inference_mode()
    def _statistics(self) -> dict:
        model = self.load_dense()
        acc = StatisticsAccumulator(model.backbone.num_features, len(self.splits.class_names))
        for x, y in progress(self.loader("train", False), "statistics"):
            out = model.forward_all(x.to(self.device))
            acc.update(out.features, y, out.feature_maps)
        stats = acc.finalize()
        stats.save(self.runner.work_dir("statistics") / "stats.npz")
        dead = int((stats.std < 1e-8).sum())
        return {
            "num_samples": stats.num_samples,
            "num_features": int(stats.A.shape[0]),
            "dead_features": dead,
        }

    def _assignment(self) -> dict:
        from .solver import solve_assignment

        stats = AssignmentStatistics.load(self.runner.work_dir("statistics") / "stats.npz")
        a = self.config.assignment
        result = solve_assignment(
            stats.A,
            stats.R,
            stats.b,
            a.n,
            a.k,
            time_limit=a.time_limit,
            mip_gap=a.mip_gap,
            seed=self.config.seed,
        )
        if not all(result.checks.values()):
            raise RuntimeError(f"the assignment violates constraints: {result.checks}")
        write_json(self.runner.work_dir("assignment") / "result.json", result.to_dict())
        return {
            "objective": result.objective,
            "bound": result.bound,
            "gap": result.gap,
            "status": result.status,
            "wall_s": result.wall_s,
        }

    def _assignment_result(self) -> dict:
        return json.loads((self.runner.work_dir("assignment") / "result.json").read_text())

    def _finetune(self) -> dict:
        self._seed(1)
        dense = self.load_dense()
        stats = AssignmentStatistics.load(self.runner.work_dir("statistics") / "stats.npz")
        result = self._assignment_result()
        selected = np.asarray(result["selected"], dtype=int)
        dense_summary = self.runner.read_record("dense") or {}
        model = QPM.from_assignment(
            dense.backbone,
            selected_features=selected,
            weight=np.asarray(result["weight"], dtype=np.float32),
            mean=stats.mean[selected],
            std=stats.std[selected],
            label_names=self.splits.class_names,
            k=self.config.assignment.k,
            preprocessing=self.preprocessing,
            metrics={"dense_accuracy": dense_summary.get("summary", {}).get("test_accuracy")},
            training=self.config.to_dict(),
        ).to(self.device)
        section = self.config.finetune
        model.head.dropout.p = section.dropout
        before = evaluate_accuracy(
            model, self.loader("test", False), self.device, desc="qpm before fine-tuning"
        )
        work = self.runner.work_dir("finetune")
        trainable = [p for p in model.parameters() if p.requires_grad]
        history = train_phase(
            model,
            lambda: model.head.weight,
            [{"params": trainable}],
            section,
            self.loader("train", True, section),
            self.loader("test", False),
            self.device,
            work,
            "finetune",
            eval_every=max(1, section.epochs // 4),
        )
        accuracy = history[-1].test_accuracy if history else before
        model.head.dropout.p = 0.0
        model.set_config(
            model.config.replace(metrics={**model.config.metrics, "accuracy": accuracy})
        )
        model.eval().cpu().save_pretrained(self.out / "model")
        write_json(work / "history.json", [asdict(r) for r in history])
        (work / "resume.pt").unlink(missing_ok=True)
        return {
            "accuracy_before_finetuning": before,
            "test_accuracy": accuracy,
            "epochs": section.epochs,
        }

    def _evaluate(self) -> dict:
        return self.evaluate_checkpoint(self.out / "model", with_dense=True)

    def has_dense(self) -> bool:
        return (self.runner.work_dir("dense") / "weights.safetensors").exists()

    def evaluate_checkpoint(self, model_dir: Path, with_dense: bool = True) -> dict:
        """All metrics of the checkpoint (and of this run's dense model), written into
        model_dir/metrics.json and config.json's `metrics`; returns the flat metrics."""
        model = QPM.from_pretrained(model_dir).to(self.device)
        self.preprocessing = model.config.preprocessing  # evaluate exactly as the model predicts
        splits = self.splits
        truth = (
            splits.ground_truth.as_seen(model.config.preprocessing) if splits.ground_truth else None
        )
        train, test = self.loader("train", False), self.loader("test", False)
        common = {
            "num_classes": len(splits.class_names),
            "class_attributes": splits.class_attributes,
            "sid_k": min(SID_K, model.config.k),  # the dense model is measured at the same k
        }
        final = evaluate_model(
            model,
            model.head.weight,
            train,
            test,
            self.device,
            ground_truth=truth,
            desc="qpm",
            **common,
        )
        results: dict[str, ModelEvaluation] = {"model": final}
        if with_dense and self.has_dense():
            dense = self.load_dense()
            results["dense"] = evaluate_model(
                dense,
                dense.linear.weight,
                train,
                test,
                self.device,
                with_contrastiveness=False,
                desc="dense",
                **common,
            )
        metrics = dict(results["model"].flat())
        if "dense" in results:
            metrics.update(results["dense"].flat("dense_"))
        changes: dict[str, Any] = {"metrics": {**model.config.metrics, **metrics}}
        if final.ground_truth is not None:
            changes["feature_names"] = tuple(
                concept_feature_names(final.ground_truth, truth.concept_names)
            )
        config = model.config.replace(**changes)
        config.save(Path(model_dir) / "config.json")
        write_json(
            Path(model_dir) / "metrics.json",
            {"metrics": metrics, **{name: r.to_dict() for name, r in results.items()}},
        )
        return metrics

    # -- Q-SENN ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _pooled_features(self, backbone: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """All pooled backbone features [N, F] of the training set (test-time transforms)."""
        backbone.eval()
        features, labels = [], []
        for x, y in progress(self.loader("train", False), "features"):
            features.append(backbone(x.to(self.device)).mean(dim=(2, 3)).float().cpu())
            labels.append(y)
        return torch.cat(features), torch.cat(labels)

    def _qsenn(self) -> dict:
        """method.md §5: select n features once, then per round fit and quantise the sparse layer
        on the current features and fine-tune with it frozen (μ, σ trainable)."""
        from .qsenn import quantised_layer, select_features

        q, a = self.config.qsenn, self.config.assignment
        work = self.runner.work_dir("qsenn")
        labels_names = self.splits.class_names
        backbone = self.load_dense().backbone
        selected: list[int] | None = None
        rounds = []
        model = None
        for r in range(1, q.rounds + 1):
            folder = work / f"round{r}"
            if (folder / "done.json").exists():  # finished before an interruption
                model = QPM.from_pretrained(folder).to(self.device)
                backbone = model.backbone
                done = json.loads((folder / "done.json").read_text())
                selected, rounds = done["selected"], rounds + [done["summary"]]
                log.info("q-senn round %d: reused", r)
                continue
            self._seed(10 + r)
            X, y = self._pooled_features(backbone)
            mean, std = X.mean(dim=0), X.std(dim=0, unbiased=False).clamp_min(1e-6)
            if selected is None:
                order = select_features(
                    (X - mean) / std,
                    y,
                    len(labels_names),
                    a.n,
                    alpha=q.selection_alpha,
                    steps=q.path_steps,
                    epsilon=q.epsilon,
                )
                selected = sorted(order)
            Z = (X[:, selected] - mean[selected]) / std[selected]
            layer = quantised_layer(
                Z.double(),
                y,
                len(labels_names),
                a.k,
                alpha=q.layer_alpha,
                steps=q.path_steps,
                epsilon=q.epsilon,
            )
            model = QPM.from_assignment(
                backbone,
                selected_features=selected,
                weight=layer.weight,
                bias=layer.bias,
                mean=mean[selected].numpy(),
                std=std[selected].numpy(),
                label_names=labels_names,
                k=a.k,
                model_type="qsenn",
                preprocessing=self.preprocessing,
                training=self.config.to_dict(),
            ).to(self.device)
            section = (
                self.config.finetune
                if r == 1
                else replace(
                    self.config.finetune,
                    epochs=q.later_epochs,
                    lr=self.config.finetune.lr * q.lr_decay ** (r - 2),
                )
            )
            model.head.dropout.p = section.dropout
            before = evaluate_accuracy(
                model, self.loader("test", False), self.device, desc=f"q-senn round {r}"
            )
            with trainable_normalisation(model.head):  # Q-SENN trains μ and σ too
                trainable = [p for p in model.parameters() if p.requires_grad]
                history = train_phase(
                    model,
                    lambda: model.head.weight,  # noqa: B023 - called within this iteration
                    [{"params": trainable}],
                    section,
                    self.loader("train", True, section),
                    self.loader("test", False),
                    self.device,
                    folder,
                    f"q-senn round {r}",
                    eval_every=max(1, section.epochs),
                )
            model.head.dropout.p = 0.0
            after = history[-1].test_accuracy if history else before
            summary = {
                "round": r,
                "layer_train_accuracy": layer.dense_accuracy,
                "quantised_test_accuracy": before,
                "test_accuracy": after,
                "nonzeros": int(np.count_nonzero(layer.weight)),
                "magnitude": layer.magnitude,
            }
            log.info(
                "q-senn round %d: quantised layer %.4f → fine-tuned %.4f test accuracy",
                r,
                before,
                after,
            )
            model.eval().save_pretrained(folder)
            (folder / "resume.pt").unlink(missing_ok=True)
            write_json(folder / "done.json", {"selected": selected, "summary": summary})
            backbone = model.backbone
            rounds.append(summary)
        assert model is not None
        dense_summary = (self.runner.read_record("dense") or {}).get("summary", {})
        accuracy = rounds[-1]["test_accuracy"]
        model.set_config(
            model.config.replace(
                metrics={"dense_accuracy": dense_summary.get("test_accuracy"), "accuracy": accuracy}
            )
        )
        model.eval().cpu().save_pretrained(self.out / "model")
        write_json(work / "rounds.json", rounds)
        return {"test_accuracy": accuracy, "rounds": rounds}
