"""The demo quality score (metrics/shapes_classifier.py): a classifier of builtin:shapes and the score of fakes."""

import math

import pytest
import torch

from metrics import shapes_classifier


@pytest.fixture(scope='module')
def classifier():
    """A classifier at 32x32 trained on fewer images than the bench uses (about 30 s on one core)."""
    torch.set_num_threads(1)
    return shapes_classifier.train_classifier(32, num_images=2000, epochs=10)


def _held_out(count, resolution=32):
    offset = shapes_classifier.TEST_INDEX_OFFSET
    return shapes_classifier.real_images(range(offset, offset + count), resolution)


def test_quality_score_counts_confidence_and_class_entropy():
    probs = torch.tensor([[0.95, 0.05, 0, 0], [0.1, 0.9, 0, 0], [0.3, 0.3, 0.4, 0], [0, 0, 0.05, 0.95]])
    score = shapes_classifier.quality_score(probs, threshold=0.9)
    assert score['confident'] == 0.75
    assert score['class_fractions'] == [0.25, 0.25, 0.25, 0.25]
    assert score['entropy_bits'] == pytest.approx(2.0)
    one_class = shapes_classifier.quality_score(torch.tensor([[0.5, 0.2, 0.2, 0.1]] * 3))
    assert one_class['confident'] == 0 and one_class['entropy_bits'] == 0.0
    two_classes = shapes_classifier.quality_score(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
    assert two_classes['entropy_bits'] == pytest.approx(1.0)
    assert not math.copysign(1, one_class['entropy_bits']) < 0


def test_classifier_handles_8_to_64_pixels():
    for resolution in (8, 16, 64):
        logits = shapes_classifier.ShapesClassifier(resolution)(torch.zeros([2, 3, resolution, resolution]))
        assert logits.shape == (2, 4)


def test_real_shapes_score_confident_and_balanced(classifier):
    images, labels = _held_out(400)
    probs = shapes_classifier.predict(classifier, images)
    assert float((probs.argmax(dim=1) == labels).float().mean()) > 0.95
    score = shapes_classifier.quality_score(probs)
    assert score['confident'] > 0.8
    assert score['entropy_bits'] > 1.95


def test_noise_and_blobs_score_unconfident(classifier):
    generator = torch.Generator().manual_seed(123)
    noise = torch.randn([400, 3, 32, 32], generator=generator).clamp(-1, 1)
    assert shapes_classifier.quality_score(shapes_classifier.predict(classifier, noise))['confident'] < 0.05
    # Real shapes blurred into blobs (box filter 9 px, three passes) are not any particular shape.
    images, _labels = _held_out(400)
    blobs = images
    for _ in range(3):
        blobs = torch.nn.functional.avg_pool2d(blobs, 9, stride=1, padding=4, count_include_pad=False)
    assert shapes_classifier.quality_score(shapes_classifier.predict(classifier, blobs))['confident'] < 0.1


def test_within_class_spread_is_the_mean_rms_distance_within_each_predicted_class():
    # Class 0: a = (0, 0), b = (1, 1), c = (0, 0): RMS distances ab = bc = 1, ac = 0 -> mean over pairs 2/3.
    # Class 1: d = (0, 0), e = (0, 2): RMS distance sqrt(4 / 2). Weighted by 3 and 2 images.
    images = torch.tensor([[0., 0], [1, 1], [0, 0], [0, 0], [0, 2]]).view(5, 1, 1, 2)
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]])
    expected = (3 * (2 / 3) + 2 * math.sqrt(2)) / 5
    assert shapes_classifier.within_class_spread(images, probs) == pytest.approx(expected, rel=1e-12)
    # One image drawn again and again per class: no spread; a class of one image is skipped.
    assert shapes_classifier.within_class_spread(images[[1, 1, 1, 4, 4]], probs) == 0.0
    assert shapes_classifier.within_class_spread(images[[0, 3]], probs[[0, 3]]) == 0.0


def test_a_generator_of_one_image_per_class_has_no_spread(classifier):
    images, _labels = _held_out(200)
    probs = shapes_classifier.predict(classifier, images)
    real_spread = shapes_classifier.within_class_spread(images, probs)
    assert 0.3 < real_spread < 1.5  # Random colours: two images of one shape differ by ~half the range per pixel.
    one_per_class = torch.stack([images[probs[:, k].argmax()] for k in range(4)]).repeat(50, 1, 1, 1)
    collapsed = shapes_classifier.quality_score(shapes_classifier.predict(classifier, one_per_class))
    assert collapsed['confident'] > 0.9 and collapsed['entropy_bits'] > 1.95  # Fools confidence and entropy ...
    spread = shapes_classifier.within_class_spread(one_per_class, shapes_classifier.predict(classifier, one_per_class))
    assert spread == 0.0  # ... but not the spread.
