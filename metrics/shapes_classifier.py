"""A small CNN that tells the four classes of `builtin:shapes` apart, and the demo quality score built on it.

The score of a generator (bench/bench_demo_quality.py, issue 15 item 3) is measured on its fakes:
  confident  the fraction of fakes whose top class has softmax probability >= a threshold (0.9), i.e. images the
             classifier is sure show one particular shape;
  entropy    the entropy in bits of the histogram of predicted classes (argmax) over all fakes: 2 bits = the four
             classes equally often, 0 = every fake the same class.
  spread     how different two fakes given the same class are (mean RMS pixel distance, [-1, 1] range), reported
             relative to held-out real images (1.0 = as varied as the data). Confidence and entropy alone reward a
             generator that draws one fixed image per class that the classifier happens to accept (seen with an
             auxiliary-classifier loss: four blurred blobs, 0.74 confident, 1.92 bits); spread near 0 exposes it.
So that blobs, bare backgrounds and noise do not get a confident label by accident, the classifier also trains on
such "no shape" images with the uniform distribution as target: it learns to say "I cannot tell" (confidence 0.25).

Images everywhere here: [N, 3, H, W] float32 in [-1, 1] (the generator's range), H = W a power of two >= 8.
Everything is rendered procedurally (training/shapes_dataset.py) and trained on the CPU in seconds: no downloads.
"""

import math

import numpy as np
import torch

from training.shapes_dataset import NUM_CLASSES, render_shape_image

TEST_INDEX_OFFSET = 1_000_000  # Held-out images come from indices no demo dataset (5000 images) ever reaches.

#----------------------------------------------------------------------------


class ShapesClassifier(torch.nn.Module):
    """3x3 conv + leaky ReLU, average pooling between them down to 4x4, then global average and max pooling and a
    linear layer to 4 logits. Global pooling makes it work at any resolution >= 8; the max half sees corners."""

    def __init__(self, resolution, width=16):
        super().__init__()
        layers, channels, res = [], 3, resolution
        while True:
            out_channels = min(width * resolution // res, 4 * width)
            layers += [torch.nn.Conv2d(channels, out_channels, 3, padding=1), torch.nn.LeakyReLU(0.2)]
            channels = out_channels
            if res <= 4:
                break
            layers.append(torch.nn.AvgPool2d(2))
            res //= 2
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(2 * channels, NUM_CLASSES)

    def forward(self, images):
        """images: [N, 3, H, W] float in [-1, 1] -> logits [N, NUM_CLASSES]."""
        # Per-image standardisation: colours and contrast polarity are random in builtin:shapes, the outline is not.
        x = images - images.mean(dim=[1, 2, 3], keepdim=True)
        x = x / (x.square().mean(dim=[1, 2, 3], keepdim=True) + 1e-4).sqrt()
        x = self.features(x)
        x = torch.cat([x.mean(dim=[2, 3]), x.amax(dim=[2, 3])], dim=1)
        return self.head(x)

#----------------------------------------------------------------------------
# Data: real images of builtin:shapes with one-hot targets, and "no shape" images with uniform targets.


def real_images(indices, resolution):
    """Images number `indices` of builtin:shapes -> (images [N, 3, R, R] float in [-1, 1], labels [N] int64)."""
    pairs = [render_shape_image(int(idx), resolution) for idx in indices]
    images = np.stack([image for image, _label in pairs]).transpose(0, 3, 1, 2)
    labels = np.array([label for _image, label in pairs], dtype=np.int64)
    return torch.from_numpy(images).float() / 127.5 - 1, torch.from_numpy(labels)


def no_shape_images(real, generator):
    """Images that show no particular shape, made from `real` [N, 3, R, R]: a third Gaussian noise, a third flat
    colours (each image's mean colour), a third the real image blurred until the shape is a blob. Same shape."""
    n, _c, h, _w = real.shape
    kind = torch.arange(n) % 3
    noise = torch.randn(real.shape, generator=generator).clamp(-1, 1)
    flat = real.mean(dim=[2, 3], keepdim=True).expand_as(real)
    blur_size = max(3, h // 4) | 1  # An odd box as wide as a quarter of the image erases corners and points.
    blurred = real
    for _ in range(3):  # Three box filters ~ a Gaussian.
        blurred = torch.nn.functional.avg_pool2d(blurred, blur_size, stride=1, padding=blur_size // 2,
                                                 count_include_pad=False)
    pick = kind.view(n, 1, 1, 1)
    return torch.where(pick == 0, noise, torch.where(pick == 1, flat, blurred))


def _training_batch(images, labels, generator):
    """The batch (one-hot targets, random x-flips) plus a third as many "no shape" images (uniform targets): fewer
    negatives than reals, or the model learns to hedge before it learns the shapes. -> (images, targets [N, C])."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
    negatives = no_shape_images(images[: len(images) // 3], generator)
    targets = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    uniform = torch.full([len(negatives), NUM_CLASSES], 1 / NUM_CLASSES)
    return torch.cat([images, negatives]), torch.cat([targets, uniform])

#----------------------------------------------------------------------------


def train_classifier(resolution, num_images=4000, epochs=12, batch_size=32, lr=3e-3, seed=0):
    """Train a ShapesClassifier on images 0 .. num_images-1 of builtin:shapes at `resolution`. Returns it (eval)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ShapesClassifier(resolution)
    images, labels = real_images(range(num_images), resolution)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(num_images / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for _epoch in range(epochs):
        order = torch.randperm(num_images, generator=generator)
        for start in range(0, num_images, batch_size):
            idx = order[start:start + batch_size]
            batch, targets = _training_batch(images[idx], labels[idx], generator)
            loss = torch.nn.functional.cross_entropy(model(batch), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model, images, batch_size=256):
    """images [N, 3, H, W] float in [-1, 1] -> class probabilities [N, NUM_CLASSES] (float32, CPU)."""
    probs = [torch.softmax(model(images[i:i + batch_size].float().cpu()), dim=1) for i in range(0, len(images),
                                                                                                  batch_size)]
    return torch.cat(probs)


def test_accuracy(model, resolution, num_images=1000):
    """Accuracy of `model` on held-out images of builtin:shapes (indices from TEST_INDEX_OFFSET on), in [0, 1]."""
    images, labels = real_images(range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + num_images), resolution)
    return float((predict(model, images).argmax(dim=1) == labels).float().mean())


def quality_score(probs, threshold=0.9):
    """Class probabilities [N, C] -> dict(confident = fraction with max prob >= threshold, entropy_bits = entropy of
    the argmax histogram in bits, class_fractions = that histogram as a list)."""
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1]).double()
    fractions = counts / counts.sum()
    nonzero = fractions[fractions > 0]
    entropy = float(-(nonzero * torch.log2(nonzero)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0.
    confident = float((probs.max(dim=1).values >= threshold).double().mean())
    return dict(confident=confident, entropy_bits=entropy, class_fractions=[float(f) for f in fractions])


def within_class_spread(images, probs, max_per_class=200):
    """Mean RMS pixel distance between two different images of the same predicted class (argmax of probs).

    images: [N, C, H, W] float (the [-1, 1] range); probs: [N, K] class probabilities. Uses the first max_per_class
    images of each class; classes with fewer than two images are skipped. Classes are weighted by the number of
    images used. Returns a float >= 0 (0 = every image of a class identical; 0.0 when no class has two images).
    """
    labels = probs.argmax(dim=1)
    weighted_sum, weight = 0.0, 0
    for k in range(probs.shape[1]):
        members = images[labels == k][:max_per_class].flatten(1).double()
        count = len(members)
        if count < 2:
            continue
        distances = torch.cdist(members, members, compute_mode='donot_use_mm_for_euclid_dist')  # Exact zeros.
        distances = distances / math.sqrt(members.shape[1])
        weighted_sum += float(distances.sum()) / (count - 1)  # = count * mean over ordered pairs i != j.
        weight += count
    return weighted_sum / weight if weight else 0.0
