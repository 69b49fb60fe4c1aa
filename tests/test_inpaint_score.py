"""The Inception-Score-like score and its shipped digit classifier (primec.apps.inpaint_score)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recorded_cpu import bytes_reproducible

from primec.apps.inpaint_score import (
    CLASSIFIER,
    image_score,
    inception_score,
    load_classifier,
    main,
)
from primec.datasets.inpaint import make_split
from primec.errors import PrimecError
from primec.nn import prime_nmnist


def test_the_score_of_hand_made_predictions():
    # every image sure of its own digit, the digits even: KL = log 10 for each, IS = 10
    assert inception_score(np.eye(10)) == pytest.approx(10.0)
    # one answer for every image, or no confidence at all: IS = 1
    assert inception_score(np.tile(np.eye(10)[3], (7, 1))) == pytest.approx(1.0)
    assert inception_score(np.full((5, 10), 0.1)) == pytest.approx(1.0)
    # two images, two classes, p = (0.9, 0.1) and (0.1, 0.9): marginal 0.5 each
    kl = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    probs = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert inception_score(probs) == pytest.approx(np.exp(kl))


def test_the_shipped_classifier_reads_clean_digits_and_not_blank_images():
    classifier = load_classifier()
    test = make_split("test", 1)
    clean = image_score(classifier, test.clean, test.y)
    assert clean["label_accuracy"] > 0.9 and clean["inception_score"] > 8
    blank = image_score(classifier, np.full_like(test.clean, -1.0), test.y)
    assert blank["inception_score"] < 1.5 and blank["label_accuracy"] < 0.2


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    wrong = tmp_path / "nmnist.pt"
    torch.save(prime_nmnist().state_dict(), wrong)
    with pytest.raises(PrimecError, match="not a digits32 classifier"):
        load_classifier(wrong)


@pytest.mark.slow
def test_the_shipped_classifier_is_reproduced_byte_for_byte(tmp_path):
    out = tmp_path / "classifier.pt"
    main(["-o", str(out)])
    if bytes_reproducible():
        assert out.read_bytes() == CLASSIFIER.read_bytes()
        return
    # Another kind of CPU rounds differently (recorded_cpu.py): the same quality instead.
    test = make_split("test", 1)
    clean = image_score(load_classifier(out), test.clean, test.y)
    assert clean["label_accuracy"] > 0.9 and clean["inception_score"] > 8
