"""Predictions and their explanations: the logit is exactly the sum of the listed contributions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import LABELS, make_model

from qpm_zoo import InputError
from qpm_zoo.model import QPM


@pytest.mark.parametrize("model_type", ["qpm", "qsenn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logit_equals_sum_of_contributions(model_type, seed):
    model = make_model(model_type, seed=seed, n=8, k=3)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (70, 60, 3), dtype=np.uint8) for _ in range(5)]
    preds = model.predict(images, top_k=3, batch_size=2)
    batch, _ = model.preprocessor(images)
    with torch.inference_mode():
        logits = model(torch.from_numpy(batch)).numpy()
    for pred, row in zip(preds, logits):
        e = pred.explanation
        assert pred.class_index == int(np.argmax(row))
        assert pred.logit == pytest.approx(float(row.max()), rel=1e-5, abs=1e-5)
        assert e.logit == pytest.approx(
            e.bias + sum(f.contribution for f in e.features), rel=1e-5, abs=1e-5
        )
        assert len(e.features) == len(model.config.assignment.class_features[pred.class_index])
        for f in e.features:
            assert f.contribution == pytest.approx(f.weight * f.activation)
        if model_type == "qpm":
            assert e.bias == 0.0 and all(f.weight == 1.0 for f in e.features)
        assert next(s.index for s in pred.top_k) == pred.class_index
        assert len(pred.top_k) == 3
        assert sum(s.probability for s in pred.top_k) <= 1.0 + 1e-9


def test_every_class_logit_is_explained_exactly():
    """Not only the winner: explain_logits reproduces any class's logit from the features."""
    model = make_model("qsenn", seed=4, n=8, k=3)
    x = torch.rand(4, 3, 64, 64)
    with torch.inference_mode():
        out = model.forward_all(x)
    for b in range(4):
        for c in range(model.config.num_classes):
            e = model.explain_logits(c, float(out.logits[b, c]), out.features[b].numpy())
            assert e.total == pytest.approx(e.logit, rel=1e-5, abs=1e-5)


def test_single_input_gives_one_prediction_and_list_gives_list(qpm_dir, image_file):
    model = QPM.from_pretrained(qpm_dir)
    one = model.predict(image_file)
    many = model.predict([image_file])
    assert isinstance(many, list) and len(many) == 1
    assert one.to_dict() == many[0].to_dict()
    assert one.input == str(image_file)


def test_shared_with_lists_the_other_users(qpm_dir):
    model = QPM.from_pretrained(qpm_dir)
    rows = model.config.assignment.class_features
    for c, row in enumerate(rows):
        for f in model.explain_class(c).features:
            users = {LABELS[d] for d, r in enumerate(rows) if f.index in r and d != c}
            assert set(f.shared_with) == users


def test_explain_class_by_name_and_index(qpm_dir):
    model = QPM.from_pretrained(qpm_dir)
    by_name = model.explain_class("Blue Jay")
    assert by_name == model.explain_class(2) == model.explain_class("blue jay")
    assert by_name.label == "Blue Jay"
    assert len(by_name.features) == model.config.k
    assert [f.index for f in by_name.features] == list(model.config.assignment.class_features[2])
    assert json.loads(json.dumps(by_name.to_dict())) == by_name.to_dict()


def test_compare_partitions_the_features(qpm_dir):
    model = QPM.from_pretrained(qpm_dir)
    cmp = model.compare("Cardinal", "Summer Tanager")
    a = set(model.config.assignment.class_features[0])
    b = set(model.config.assignment.class_features[1])
    assert {f.index for f in cmp.shared} == a & b
    assert {f.index for f in cmp.only_a} == a - b
    assert {f.index for f in cmp.only_b} == b - a
    assert cmp.class_a.label == "Cardinal" and cmp.class_b.index == 1
    d = cmp.to_dict()
    assert set(d) == {"class_a", "class_b", "shared", "only_a", "only_b"}


def test_unknown_class_suggests_close_names(qpm_dir):
    model = QPM.from_pretrained(qpm_dir)
    with pytest.raises(InputError, match=r"unknown class 'Blue Jai'; did you mean 'Blue Jay'"):
        model.explain_class("Blue Jai")
    with pytest.raises(InputError, match="class index 9 is out of range: the model has 5 classes"):
        model.compare(0, 9)


def test_bad_top_k_is_an_input_error(qpm_dir, image_file):
    model = QPM.from_pretrained(qpm_dir)
    with pytest.raises(InputError, match="top_k"):
        model.predict(image_file, top_k=0)


def test_prediction_to_dict_is_json_safe(qpm_dir, image_file):
    pred = QPM.from_pretrained(qpm_dir).predict(image_file)
    d = pred.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d["explanation"]["features"][0]) == {
        "index",
        "channel",
        "name",
        "activation",
        "weight",
        "contribution",
        "shared_with",
    }


def test_predict_restores_training_mode():
    model = make_model()
    model.train()
    model.predict(np.zeros((64, 64, 3), np.uint8))
    assert model.training
