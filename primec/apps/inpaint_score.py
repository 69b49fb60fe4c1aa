"""An Inception-Score-like quality score of inpainted digits, with a classifier primec trains.

The Inception Score (Salimans et al., 2016) rates generated images by a classifier's
predictions p(y | x): IS = exp(E_x KL(p(y | x) || p(y))), with p(y) the mean prediction over
the images. It is high when each image is recognised as one digit with confidence (sharp
p(y | x)) and the images cover the digits evenly (broad p(y)); it lies in [1, 10] for 10
classes. Inception v3 cannot be downloaded here, so the classifier is a small MLP (1024 -> 128
ReLU -> 10) trained on the clean 32x32 digits-inpaint train split: full batch, Adam (lr 1e-2),
`STEPS` steps, seed 0, one thread, so the same command gives the same bytes. The shipped
checkpoint `primec/models/digits32-classifier.pt` is made by

    python -m primec.apps.inpaint_score -o primec/models/digits32-classifier.pt

next to the score, `label_accuracy` says how often the classifier reads the true digit from
the inpainted image (the hole covers the digit's centre, so a poor fill changes the digit).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from primec.apps.train import _reproducible, save_model
from primec.datasets.inpaint import make_split
from primec.errors import PrimecError

CLASSIFIER = Path(__file__).resolve().parent.parent / "models" / "digits32-classifier.pt"
HIDDEN = 128
STEPS = 300
LR = 1e-2


def digit_classifier() -> nn.Sequential:
    """The score's classifier: flatten, linear 1024 -> 128, ReLU, linear 128 -> 10 (logits)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def train_classifier(seed: int = 0) -> nn.Sequential:
    """Train the classifier on the clean train split (full batch, Adam), reproducibly."""
    train = make_split("train", 1, seed)
    x, y = torch.from_numpy(train.clean), torch.from_numpy(train.y)
    with _reproducible(seed, 1):
        model = digit_classifier()
        optimiser = torch.optim.Adam(model.parameters(), LR)
        for _ in range(STEPS):
            loss = nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def load_classifier(path: str | Path = CLASSIFIER) -> nn.Sequential:
    """The shipped (or given) classifier checkpoint; another model's state_dict is refused."""
    model = digit_classifier()
    state = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(state, dict) or set(state) != set(model.state_dict()):
        raise PrimecError(
            "not a digits32 classifier checkpoint",
            where=str(path),
            hint="make one with `python -m primec.apps.inpaint_score -o FILE`",
        )
    model.load_state_dict(state)
    return model.eval()


def predictions(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """p(y | x) [N, 10] for images [N, 1, 32, 32] in [-1, 1] (float64)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.asarray(images, np.float32)))
    return torch.softmax(logits.double(), dim=1).numpy()


def inception_score(probs: np.ndarray) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of the rows of probs [N, classes]."""
    marginal = probs.mean(axis=0, keepdims=True)
    tiny = np.finfo(np.float64).tiny
    kl = (probs * (np.log(probs + tiny) - np.log(marginal + tiny))).sum(axis=1)
    return float(np.exp(kl.mean()))


def image_score(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The Inception-Score-like score and the label accuracy of images [N, 1, 32, 32]."""
    probs = predictions(model, images)
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    return {"inception_score": inception_score(probs), "label_accuracy": accuracy}


def main(argv: list[str] | None = None) -> None:
    """Train the classifier and write its state_dict; print its test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="the checkpoint to write (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = train_classifier(args.seed)
    test = make_split("test", 1)
    score = image_score(model, test.clean, test.y)
    save_model(model, args.output)
    print(
        f"wrote {args.output}: test accuracy {score['label_accuracy']:.4f}, "
        f"inception score of the clean test digits {score['inception_score']:.3f}"
    )


if __name__ == "__main__":
    main()
