"""training.dataset.ImageFolderDataset: reads dataset_tool output exactly; subsets, x-flips and labels behave as
documented; bad datasets fail at construction with a message naming the file."""

import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dataset_tool
from training import shapes_dataset
from training.dataset import ImageFolderDataset

NUM_SHAPES = 24
RESOLUTION = 16

#----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def shapes_zip(tmp_path_factory):
    """builtin:shapes converted by dataset_tool: NUM_SHAPES images at RESOLUTION, class labels."""
    dest = tmp_path_factory.mktemp('shapes') / 'shapes-16.zip'
    args = ['--source=builtin:shapes', f'--dest={dest}', f'--max-images={NUM_SHAPES}',
            f'--resolution={RESOLUTION}x{RESOLUTION}']
    result = CliRunner().invoke(dataset_tool.main, args)
    assert result.exit_code == 0, result.output
    return str(dest)


def expected_shape(idx):
    """(image [3, H, W] uint8, one-hot label [4] float32) of builtin:shapes image idx."""
    image, label = shapes_dataset.render_shape_image(idx, RESOLUTION)
    return image.transpose(2, 0, 1), np.eye(shapes_dataset.NUM_CLASSES, dtype=np.float32)[label]


def save_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array).save(path)


def random_image(seed, height, width, channels=3):
    shape = [height, width] if channels == 1 else [height, width, channels]
    return np.random.RandomState(seed).randint(0, 256, size=shape, dtype=np.uint8)

#----------------------------------------------------------------------------
# Round trip through dataset_tool


def test_shapes_zip_items_equal_rendered_images_and_onehot_labels(shapes_zip):
    dataset = ImageFolderDataset(shapes_zip, use_labels=True)
    assert len(dataset) == NUM_SHAPES
    assert dataset.name == 'shapes-16'
    assert dataset.image_shape == [3, RESOLUTION, RESOLUTION]
    assert (dataset.num_channels, dataset.resolution) == (3, RESOLUTION)
    assert dataset.label_shape == [shapes_dataset.NUM_CLASSES] and dataset.label_dim == shapes_dataset.NUM_CLASSES
    assert dataset.has_labels and dataset.has_onehot_labels
    for idx in range(NUM_SHAPES):
        image, label = dataset[idx]
        expected_image, expected_label = expected_shape(idx)
        assert image.dtype == np.uint8 and label.dtype == np.float32
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(label, expected_label)
        np.testing.assert_array_equal(dataset.get_label(idx), expected_label)


def test_without_use_labels_labels_are_empty(shapes_zip):
    dataset = ImageFolderDataset(shapes_zip)
    assert dataset.label_shape == [0] and not dataset.has_labels
    assert dataset[0][1].shape == (0,) and dataset[0][1].dtype == np.float32
    assert dataset.has_label_file_labels  # Probing for --cond does not need use_labels=True.


def test_xflip_appends_mirrored_copies(shapes_zip):
    dataset = ImageFolderDataset(shapes_zip, use_labels=True, xflip=True)
    assert len(dataset) == 2 * NUM_SHAPES
    for idx in (0, 5, NUM_SHAPES - 1):
        original, label = dataset[idx]
        flipped, flipped_label = dataset[NUM_SHAPES + idx]
        np.testing.assert_array_equal(flipped, expected_shape(idx)[0][:, :, ::-1])
        np.testing.assert_array_equal(original, expected_shape(idx)[0])
        np.testing.assert_array_equal(flipped_label, label)
        details = dataset.get_details(NUM_SHAPES + idx)
        assert (details.raw_idx, details.xflip) == (idx, True)
        assert dataset.get_details(idx).xflip is False


def test_max_size_takes_the_seeded_sorted_subset(shapes_zip):
    subset = ImageFolderDataset(shapes_zip, max_size=10)
    # Independent statement of the rule: the first 10 of RandomState(seed).permutation(N), sorted.
    expected = np.sort(np.random.RandomState(0).permutation(NUM_SHAPES)[:10])
    assert [subset.get_details(i).raw_idx for i in range(len(subset))] == expected.tolist()
    for idx, raw_idx in enumerate(expected):
        np.testing.assert_array_equal(subset[idx][0], expected_shape(raw_idx)[0])
    again = ImageFolderDataset(shapes_zip, max_size=10)
    assert [again.get_details(i).raw_idx for i in range(10)] == expected.tolist()
    other_seed = ImageFolderDataset(shapes_zip, max_size=10, random_seed=1)
    assert [other_seed.get_details(i).raw_idx for i in range(10)] != expected.tolist()
    assert len(ImageFolderDataset(shapes_zip, max_size=10, xflip=True)) == 20
    assert len(ImageFolderDataset(shapes_zip, max_size=1000)) == NUM_SHAPES


def test_dataset_pickles_without_an_open_zip_and_reads_in_worker_processes(shapes_zip):
    dataset = ImageFolderDataset(shapes_zip, use_labels=True)
    _ = dataset[0]  # Opens the zip in this process.
    restored = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(restored[3][0], dataset[3][0])
    loader = torch.utils.data.DataLoader(dataset, batch_size=NUM_SHAPES, num_workers=2, shuffle=False)
    images, labels = next(iter(loader))
    assert images.dtype == torch.uint8 and list(images.shape) == [NUM_SHAPES, 3, RESOLUTION, RESOLUTION]
    for idx in (0, NUM_SHAPES - 1):
        np.testing.assert_array_equal(images[idx].numpy(), expected_shape(idx)[0])
        np.testing.assert_array_equal(labels[idx].numpy(), expected_shape(idx)[1])


def test_official_training_set_kwargs_construct_the_dataset(shapes_zip):
    kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=shapes_zip, use_labels=True,
                  max_size=None, xflip=False, resolution=RESOLUTION, random_seed=0)
    module_name, class_name = kwargs.pop('class_name').rsplit('.', 1)
    dataset = getattr(__import__(module_name, fromlist=[class_name]), class_name)(**kwargs)
    assert len(dataset) == NUM_SHAPES and dataset.resolution == RESOLUTION

#----------------------------------------------------------------------------
# Folders and label files


def test_folder_with_float_vector_labels_and_grayscale_images(tmp_path):
    images = {'x/b.png': random_image(1, 8, 8, channels=1), 'a.png': random_image(2, 8, 8, channels=1)}
    for rel, array in images.items():
        save_png(str(tmp_path / rel), array)
    (tmp_path / 'dataset.json').write_text(json.dumps({'labels': [['x/b.png', [0.5, -1.0]], ['a.png', [2, 3]]]}))
    dataset = ImageFolderDataset(str(tmp_path), use_labels=True)
    assert dataset.image_shape == [1, 8, 8] and dataset.label_shape == [2] and not dataset.has_onehot_labels
    # Items are in sorted path order: a.png, x/b.png.
    np.testing.assert_array_equal(dataset[0][0], images['a.png'][np.newaxis])
    np.testing.assert_array_equal(dataset[1][0], images['x/b.png'][np.newaxis])
    np.testing.assert_array_equal(dataset[0][1], np.array([2, 3], dtype=np.float32))
    np.testing.assert_array_equal(dataset.get_details(1).raw_label, np.array([0.5, -1.0], dtype=np.float32))


def test_use_labels_without_labels_says_cond_needs_dataset_json(tmp_path):
    save_png(str(tmp_path / 'a.png'), random_image(3, 8, 8))
    with pytest.raises(IOError, match=f'--cond=1 needs labels in dataset.json of {tmp_path}'):
        ImageFolderDataset(str(tmp_path), use_labels=True)
    (tmp_path / 'dataset.json').write_text(json.dumps({'labels': None}))
    with pytest.raises(IOError, match='--cond=1 needs labels in dataset.json'):
        ImageFolderDataset(str(tmp_path), use_labels=True)
    assert not ImageFolderDataset(str(tmp_path)).has_label_file_labels


def test_label_file_missing_an_image_names_it(tmp_path):
    save_png(str(tmp_path / 'a.png'), random_image(4, 8, 8))
    save_png(str(tmp_path / 'b.png'), random_image(5, 8, 8))
    (tmp_path / 'dataset.json').write_text(json.dumps({'labels': [['a.png', 1]]}))
    with pytest.raises(IOError, match='has no label for b.png'):
        ImageFolderDataset(str(tmp_path), use_labels=True)

#----------------------------------------------------------------------------
# Errors at construction


def test_missing_path_is_named(tmp_path):
    with pytest.raises(IOError, match=f'Dataset {tmp_path / "nope.zip"} does not exist'):
        ImageFolderDataset(str(tmp_path / 'nope.zip'))


def test_zip_without_images_is_refused(tmp_path):
    path = tmp_path / 'empty.zip'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('dataset.json', '{"labels": null}')
    with pytest.raises(IOError, match='contains no image files'):
        ImageFolderDataset(str(path))


def test_images_of_different_sizes_name_the_odd_one(tmp_path):
    save_png(str(tmp_path / 'a.png'), random_image(6, 64, 64))
    save_png(str(tmp_path / 'b.png'), random_image(7, 48, 64))
    with pytest.raises(IOError, match='b.png is 64x48, others are 64x64'):
        ImageFolderDataset(str(tmp_path))


def test_mixed_channel_counts_name_the_odd_one(tmp_path):
    save_png(str(tmp_path / 'a.png'), random_image(6, 8, 8))
    save_png(str(tmp_path / 'b.png'), random_image(7, 8, 8, channels=1))
    with pytest.raises(IOError, match='b.png has 1 channels, others have 3'):
        ImageFolderDataset(str(tmp_path))


@pytest.mark.parametrize('height, width, message', [
    (8, 12, 'are 12x8; training needs power-of-two sides'),
    (12, 12, 'are 12x12; training needs power-of-two sides'),
])
def test_non_square_or_non_power_of_two_images_are_refused(tmp_path, height, width, message):
    save_png(str(tmp_path / 'a.png'), random_image(8, height, width))
    with pytest.raises(IOError, match=message):
        ImageFolderDataset(str(tmp_path))


def test_resolution_argument_must_match_the_images(shapes_zip):
    with pytest.raises(IOError, match=f'are {RESOLUTION}x{RESOLUTION}, but resolution=32 was asked for'):
        ImageFolderDataset(shapes_zip, resolution=32)


def test_unreadable_image_is_named(tmp_path):
    save_png(str(tmp_path / 'a.png'), random_image(9, 8, 8))
    (tmp_path / 'b.png').write_bytes(b'garbage')
    with pytest.raises(IOError, match='Cannot read image .*b.png'):
        ImageFolderDataset(str(tmp_path))

#----------------------------------------------------------------------------
