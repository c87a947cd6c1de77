"""dataset_tool.py: every source converts to the documented layout with exact pixels; every bad input fails
cleanly (exit code 1, a message naming the file, no output left behind)."""

import gzip
import io
import json
import os
import pickle
import sys
import tarfile
import types
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from training import shapes_dataset

#----------------------------------------------------------------------------
# Helpers


def run_tool(*args):
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(dataset_tool.main, [str(arg) for arg in args], catch_exceptions=False)


def read_zip_dataset(path):
    """(names of images, [N, H, W, C] uint8 pixels, labels or None) of a zip written by dataset_tool."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith('.png'))
        arrays = []
        for name in names:
            array = np.asarray(PIL.Image.open(io.BytesIO(archive.read(name))))
            arrays.append(array[:, :, np.newaxis] if array.ndim == 2 else array)
        labels = json.loads(archive.read('dataset.json'))['labels']
    return names, np.stack(arrays), labels


def save_png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array, mode).save(path)


def random_image(seed, height, width, channels=3):
    shape = [height, width] if channels == 1 else [height, width, channels]
    return np.random.RandomState(seed).randint(0, 256, size=shape, dtype=np.uint8)


def assert_clean_failure(result, message, dest):
    """Exit code 1, the message on stderr, and neither dest nor a temporary file beside it."""
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('dataset_tool: ')]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert not os.path.exists(dest)
    parent = os.path.dirname(dest)
    leftovers = [f for f in os.listdir(parent) if f.startswith('.') or '.tmp' in f] if os.path.isdir(parent) else []
    assert leftovers == [], leftovers

#----------------------------------------------------------------------------
# builtin:shapes


def test_builtin_shapes_zip_has_documented_layout_pixels_and_labels(tmp_path):
    dest = tmp_path / 'shapes.zip'
    result = run_tool('--source=builtin:shapes', f'--dest={dest}', '--max-images=1001', '--resolution=8x8')
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(dest) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        # PNG level 0 stores raw pixels: each file is at least H * W * C bytes.
        assert min(info.file_size for info in archive.infolist() if info.filename.endswith('.png')) >= 8 * 8 * 3
    names, arrays, labels = read_zip_dataset(dest)
    assert len(names) == 1001
    assert names[0] == '00000/img00000000.png' and names[999] == '00000/img00000999.png'
    assert names[1000] == '00001/img00001000.png'
    assert arrays.shape == (1001, 8, 8, 3) and arrays.dtype == np.uint8
    for idx in (0, 1, 500, 1000):
        image, label = shapes_dataset.render_shape_image(idx, 8)
        np.testing.assert_array_equal(arrays[idx], image)
        assert labels[idx] == [names[idx], label]
    assert {label for _name, label in labels} == set(range(shapes_dataset.NUM_CLASSES))


def test_builtin_shapes_output_is_byte_identical_across_runs(tmp_path):
    args = ['--source=builtin:shapes', '--max-images=40', '--resolution=16x16']
    assert run_tool(*args, f'--dest={tmp_path / "a.zip"}').exit_code == 0
    assert run_tool(*args, f'--dest={tmp_path / "b.zip"}').exit_code == 0
    assert (tmp_path / 'a.zip').read_bytes() == (tmp_path / 'b.zip').read_bytes()


def test_builtin_shapes_images_depend_only_on_their_index():
    image_a, label_a = shapes_dataset.render_shape_image(7, 32)
    _ = shapes_dataset.render_shape_image(8, 32)
    image_b, label_b = shapes_dataset.render_shape_image(7, 32)
    np.testing.assert_array_equal(image_a, image_b)
    assert label_a == label_b
    assert not np.array_equal(image_a, shapes_dataset.render_shape_image(8, 32)[0])


def test_builtin_shapes_edges_are_antialiased():
    # A hard-edged drawing of a flat or two-tone image would have few distinct colours; box-filtered
    # supersampling produces intermediate values along every edge.
    image, _label = shapes_dataset.render_shape_image(3, 64)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20


def test_builtin_shapes_rejects_unsupported_resolution(tmp_path):
    dest = tmp_path / 'shapes.zip'
    result = run_tool('--source=builtin:shapes', f'--dest={dest}', '--resolution=2048x2048')
    assert_clean_failure(result, 'builtin:shapes renders power-of-two resolutions from 8 to 1024', str(dest))

#----------------------------------------------------------------------------
# Folders and zips


def make_labelled_folder(root):
    """Three RGB images in nested folders plus dataset.json; returns {relative path: (pixels, label)}."""
    contents = {'b/cat.png': (random_image(1, 8, 8), 2), 'a.png': (random_image(2, 8, 8), 0),
                'b/a/dog.png': (random_image(3, 8, 8), 1)}
    for rel, (array, _label) in contents.items():
        save_png(os.path.join(root, rel), array)
    with open(os.path.join(root, 'dataset.json'), 'w') as file:
        json.dump({'labels': [[rel, label] for rel, (_array, label) in contents.items()]}, file)
    with open(os.path.join(root, 'notes.txt'), 'w') as file:
        file.write('not an image')
    return contents


def test_folder_source_is_read_recursively_in_path_order_with_labels(tmp_path):
    contents = make_labelled_folder(tmp_path / 'src')
    dest = tmp_path / 'out.zip'
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}')
    assert result.exit_code == 0, result.output
    _names, arrays, labels = read_zip_dataset(dest)
    expected_order = sorted(contents)  # a.png, b/a/dog.png, b/cat.png
    assert [label for _name, label in labels] == [contents[rel][1] for rel in expected_order]
    for idx, rel in enumerate(expected_order):
        np.testing.assert_array_equal(arrays[idx], contents[rel][0])


def test_zip_source_to_folder_dest_keeps_pixels_and_labels(tmp_path):
    contents = make_labelled_folder(tmp_path / 'src')
    source_zip = tmp_path / 'src.zip'
    with zipfile.ZipFile(source_zip, 'w') as archive:
        for rel in list(contents) + ['dataset.json']:
            archive.write(tmp_path / 'src' / rel, rel)
    dest = tmp_path / 'out'
    result = run_tool(f'--source={source_zip}', f'--dest={dest}', '--max-images=2')
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(dest)) == ['00000', 'dataset.json']
    labels = json.loads((dest / 'dataset.json').read_text())['labels']
    assert labels == [['00000/img00000000.png', 0], ['00000/img00000001.png', 1]]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(dest / '00000/img00000001.png')),
                                  contents['b/a/dog.png'][0])


def test_folder_without_dataset_json_writes_null_labels(tmp_path):
    save_png(str(tmp_path / 'src' / 'x.png'), random_image(4, 4, 4, channels=1), 'L')
    dest = tmp_path / 'out.zip'
    assert run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}').exit_code == 0
    _names, arrays, labels = read_zip_dataset(dest)
    assert labels is None
    assert arrays.shape == (1, 4, 4, 1)  # Grayscale stays one channel.

#----------------------------------------------------------------------------
# CIFAR-10 and MNIST, written in their binary formats here


def write_cifar10(path, images_per_batch=3, str_keys=False, protocol=2):
    """A cifar-10-python.tar.gz with 5 small batches; returns ([N, 32, 32, 3] uint8, [N] labels). str_keys: as a
    Python 3 re-save writes them ('data', 'labels')."""
    rng = np.random.RandomState(0)
    all_images, all_labels = [], []
    with tarfile.open(path, 'w:gz') as archive:
        for batch in range(1, 6):
            images = rng.randint(0, 256, size=[images_per_batch, 32, 32, 3], dtype=np.uint8)
            labels = [int(label) for label in rng.randint(0, 10, size=images_per_batch)]
            # The python version stores each image as 1024 red, then 1024 green, then 1024 blue bytes.
            data = images.transpose(0, 3, 1, 2).reshape(images_per_batch, 3072)
            batch_dict = {b'batch_label': b'x', b'labels': labels, b'data': data}
            if str_keys:
                batch_dict = {key.decode(): value for key, value in batch_dict.items()}
            payload = pickle.dumps(batch_dict, protocol=protocol)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{batch}')
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
            all_images.append(images)
            all_labels += labels
    return np.concatenate(all_images), all_labels


@pytest.mark.parametrize('str_keys,protocol', [(False, 2), (True, 2), (True, pickle.DEFAULT_PROTOCOL)])
def test_cifar10_archive_converts_pixel_exact_with_labels(tmp_path, str_keys, protocol):
    source = tmp_path / 'cifar-10-python.tar.gz'
    images, labels = write_cifar10(source, str_keys=str_keys, protocol=protocol)
    dest = tmp_path / 'cifar.zip'
    result = run_tool(f'--source={source}', f'--dest={dest}')
    assert result.exit_code == 0, result.output
    _names, arrays, written_labels = read_zip_dataset(dest)
    np.testing.assert_array_equal(arrays, images)
    assert [label for _name, label in written_labels] == labels


def test_cifar10_pickle_that_would_run_code_is_refused(tmp_path):
    source = tmp_path / 'cifar-10-python.tar.gz'
    with tarfile.open(source, 'w:gz') as archive:
        # A reference to a global function: unpickling a crafted file could call it.
        payload = pickle.dumps({b'data': os.getcwd, b'labels': []}, protocol=2)
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    dest = tmp_path / 'cifar.zip'
    assert_clean_failure(run_tool(f'--source={source}', f'--dest={dest}'), 'data_batch_1 is not a CIFAR-10', str(dest))


def write_idx_gz(path, array, magic):
    header = np.array([magic] + list(array.shape), dtype='>i4').tobytes()
    with gzip.open(path, 'wb') as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_converts_padded_to_32x32_with_labels(tmp_path):
    digits = np.random.RandomState(5).randint(0, 256, size=[4, 28, 28], dtype=np.uint8)
    labels = np.array([7, 2, 1, 0], dtype=np.uint8)
    write_idx_gz(tmp_path / 'train-images-idx3-ubyte.gz', digits, 2051)
    write_idx_gz(tmp_path / 'train-labels-idx1-ubyte.gz', labels, 2049)
    dest = tmp_path / 'mnist.zip'
    result = run_tool(f'--source={tmp_path / "train-images-idx3-ubyte.gz"}', f'--dest={dest}')
    assert result.exit_code == 0, result.output
    _names, arrays, written_labels = read_zip_dataset(dest)
    assert arrays.shape == (4, 32, 32, 1)
    np.testing.assert_array_equal(arrays[:, 2:30, 2:30, 0], digits)
    assert arrays[:, :2].max() == 0 and arrays[:, 30:].max() == 0
    assert arrays[:, :, :2].max() == 0 and arrays[:, :, 30:].max() == 0
    assert [label for _name, label in written_labels] == [7, 2, 1, 0]


def test_mnist_with_wrong_magic_number_names_the_file(tmp_path):
    source = tmp_path / 'train-images-idx3-ubyte.gz'
    write_idx_gz(source, np.zeros([1, 28, 28]), 1234)
    dest = tmp_path / 'mnist.zip'
    assert_clean_failure(run_tool(f'--source={source}', f'--dest={dest}'),
                         f'{source} is not an MNIST idx file', str(dest))


def test_lmdb_folder_without_lmdb_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'lmdb', None)  # Makes `import lmdb` raise ImportError.
    (tmp_path / 'lsun').mkdir()
    (tmp_path / 'lsun' / 'data.mdb').write_bytes(b'')
    dest = tmp_path / 'out.zip'
    assert_clean_failure(run_tool(f'--source={tmp_path / "lsun"}', f'--dest={dest}'), 'pip install lmdb', str(dest))


def make_fake_lmdb(records):
    """A stand-in for the py-lmdb calls dataset_tool makes (open, stat, begin, cursor), over {key: value}."""
    class Transaction:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

        def cursor(self):
            return iter(sorted(records.items()))

    class Environment:
        def stat(self):
            return {'entries': len(records)}

        def begin(self, write=False):
            assert not write
            return Transaction()

    module = types.ModuleType('lmdb')
    module.Error = type('Error', (Exception,), {})
    module.open = lambda path, **kwargs: Environment()
    return module


def test_lmdb_values_are_decoded_as_images_in_key_order(tmp_path, monkeypatch):
    images = {f'{key:03d}'.encode(): random_image(key, 8, 8) for key in (2, 0, 1)}
    records = {}
    for key, array in images.items():
        buffer = io.BytesIO()
        PIL.Image.fromarray(array).save(buffer, format='png')
        records[key] = buffer.getvalue()
    monkeypatch.setitem(sys.modules, 'lmdb', make_fake_lmdb(records))
    (tmp_path / 'lsun').mkdir()
    (tmp_path / 'lsun' / 'data.mdb').write_bytes(b'')
    dest = tmp_path / 'out.zip'
    result = run_tool(f'--source={tmp_path / "lsun"}', f'--dest={dest}')
    assert result.exit_code == 0, result.output
    _names, arrays, labels = read_zip_dataset(dest)
    assert labels is None
    np.testing.assert_array_equal(arrays, np.stack([images[key] for key in sorted(images)]))

#----------------------------------------------------------------------------
# Transforms


def convert_single(tmp_path, array, *args):
    save_png(str(tmp_path / 'src' / 'img.png'), array)
    dest = tmp_path / 'out.zip'
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}', *args)
    assert result.exit_code == 0, result.output
    return read_zip_dataset(dest)[1][0]


def test_center_crop_of_wide_image_keeps_the_middle_columns(tmp_path):
    image = random_image(6, 4, 8)  # 8 wide, 4 tall.
    output = convert_single(tmp_path, image, '--transform=center-crop', '--resolution=4x4')
    np.testing.assert_array_equal(output, image[:, 2:6])


def test_center_crop_of_tall_image_keeps_the_middle_rows(tmp_path):
    image = random_image(7, 7, 4)  # 4 wide, 7 tall: 3 spare rows, 1 above and 2 below.
    output = convert_single(tmp_path, image, '--transform=center-crop', '--resolution=4x4')
    np.testing.assert_array_equal(output, image[1:5])


def expected_center_crop_wide(image, width, height):
    """The official center-crop-wide rule, written out here: None = skipped."""
    src_height, src_width = image.shape[:2]
    ch = int(np.round(width * src_height / src_width))
    if src_width < width or ch < height:
        return None
    strip = PIL.Image.fromarray(image[(src_height - ch) // 2:(src_height + ch) // 2], 'RGB')
    canvas = np.zeros([width, width, 3], dtype=np.uint8)
    canvas[(width - height) // 2:(width + height) // 2] = np.asarray(strip.resize((width, height),
                                                                                  PIL.Image.LANCZOS))
    return canvas


def test_center_crop_wide_follows_the_official_rule_and_skips_with_gaps(tmp_path):
    # (W, H) of each source image: kept ones of several aspects (strip of ch = round(16 H / W) rows, odd H - ch
    # included), skipped ones narrower than 16 or with ch < 8.
    sizes = [(16, 8), (20, 12), (32, 10), (12, 12), (24, 13), (17, 30), (40, 21), (16, 7), (15, 40), (64, 40)]
    images = [random_image(seed, h, w) for seed, (w, h) in enumerate(sizes)]
    for idx, image in enumerate(images):
        save_png(str(tmp_path / 'src' / f'img{idx:02d}.png'), image)
    dest = tmp_path / 'out.zip'
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}', '--transform=center-crop-wide',
                      '--resolution=16x8')
    assert result.exit_code == 0, result.output
    expected = {f'00000/img{idx:08d}.png': expected_center_crop_wide(image, 16, 8) for idx, image in enumerate(images)}
    kept = sorted(name for name, array in expected.items() if array is not None)
    names, arrays, labels = read_zip_dataset(dest)
    assert names == kept and len(kept) == 6 and labels is None
    for name, array in zip(names, arrays):
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
    assert 'Skipped 4 images' in result.output and 'Wrote 6 images' in result.output
    assert all(f'img{idx:02d}.png' in result.output for idx in (2, 3, 7, 8))


def test_center_crop_wide_that_skips_every_image_is_a_clear_error(tmp_path):
    save_png(str(tmp_path / 'src' / 'narrow.png'), random_image(0, 8, 8))
    dest = tmp_path / 'out.zip'
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}', '--transform=center-crop-wide',
                      '--resolution=16x8')
    assert_clean_failure(result, 'all 1 images were skipped', dest)


def test_resolution_without_transform_resizes_a_flat_image_to_the_same_colour(tmp_path):
    image = np.full([12, 20, 3], (10, 200, 77), dtype=np.uint8)
    output = convert_single(tmp_path, image, '--resolution=8x8')
    np.testing.assert_array_equal(output, np.full([8, 8, 3], (10, 200, 77), dtype=np.uint8))


def test_rgba_drop_alpha_and_white_composite(tmp_path):
    rgba = np.zeros([4, 4, 4], dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 100, 51  # Red 100 at alpha 0.2.
    dropped = convert_single(tmp_path / 'drop', rgba, '--rgba=drop-alpha')
    np.testing.assert_array_equal(dropped, np.broadcast_to([100, 0, 0], [4, 4, 3]))
    white = convert_single(tmp_path / 'white', rgba, '--rgba=white')
    expected = np.round(np.array([100, 0, 0]) * 0.2 + 255 * 0.8)  # alpha * colour + (1 - alpha) * white
    np.testing.assert_allclose(white, np.broadcast_to(expected, [4, 4, 3]), atol=1)

#----------------------------------------------------------------------------
# Errors: exit code 1, a message naming the culprit, nothing left behind.


def make_folder(root, images):
    """images: {relative path: array or bytes}."""
    for rel, content in images.items():
        if isinstance(content, bytes):
            os.makedirs(os.path.dirname(os.path.join(root, rel)) or root, exist_ok=True)
            with open(os.path.join(root, rel), 'wb') as file:
                file.write(content)
        else:
            save_png(os.path.join(root, rel), content)


GOOD = {'a1.png': random_image(10, 8, 8), 'a2.png': random_image(11, 8, 8), 'a3.png': random_image(12, 8, 8)}
FAILING_FOLDERS = {
    'unreadable file': ({**GOOD, 'z.png': b'this is not a png'}, 'z.png cannot be read as an image'),
    'different size': ({**GOOD, 'z.png': random_image(13, 6, 8)}, 'z.png is 8x6, others are 8x8'),
    'mixed channels': ({**GOOD, 'z.png': random_image(14, 8, 8, channels=1)}, 'z.png is 8x8 grayscale, others are RGB'),
    'rgba by default': ({**GOOD, 'z.png': random_image(15, 8, 8, channels=4)}, 'z.png is 8x8 RGBA;'),
    'not a power of two high': ({'a.png': random_image(16, 6, 8)}, 'a.png is 8x6; training needs power-of-two sides'),
    'not a power of two': ({'a.png': random_image(17, 12, 12)}, 'a.png is 12x12; training needs power-of-two sides'),
    'no images': ({'readme.txt': b'hello'}, 'no images to convert'),
}


@pytest.mark.parametrize('case', sorted(FAILING_FOLDERS))
def test_bad_folder_fails_cleanly_naming_the_file(tmp_path, case):
    images, message = FAILING_FOLDERS[case]
    make_folder(tmp_path / 'src', images)
    for dest in (tmp_path / 'out' / 'data.zip', tmp_path / 'outdir'):
        assert_clean_failure(run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}'), message, str(dest))
    assert not (tmp_path / 'out').exists()  # The parent folder the tool created is gone too.


def test_sixteen_bit_image_is_refused_with_conversion_hint(tmp_path):
    save_png(str(tmp_path / 'src' / 'deep.png'), np.zeros([8, 8], dtype=np.uint16))
    dest = tmp_path / 'out.zip'
    assert_clean_failure(run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}'),
                         'deep.png is 8x8 I;16', str(dest))


def test_missing_label_in_dataset_json_names_the_file(tmp_path):
    make_folder(tmp_path / 'src', GOOD)
    (tmp_path / 'src' / 'dataset.json').write_text(json.dumps({'labels': [['a1.png', 0], ['a2.png', 1]]}))
    dest = tmp_path / 'out.zip'
    assert_clean_failure(run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}'),
                         'a3.png has no label in dataset.json', str(dest))


@pytest.mark.parametrize('args, message', [
    (['--resolution=48x48'], '--resolution=48x48: 48 is not a power of two of at least 4; training needs e.g. '
                             '--resolution=64x64'),
    (['--resolution=64x24'], '--resolution=64x24: 24 is not a power of two of at least 4'),
    (['--transform=center-crop'], '--transform=center-crop needs --resolution=WxH'),
    (['--transform=center-crop-wide', '--resolution=32x64'], 'center-crop-wide needs a wide resolution'),
])
def test_bad_resolution_options_fail_before_reading(tmp_path, args, message):
    dest = tmp_path / 'out.zip'
    assert_clean_failure(run_tool(f'--source={tmp_path / "does-not-matter"}', f'--dest={dest}', *args), message,
                         str(dest))


def test_missing_source_is_named(tmp_path):
    dest = tmp_path / 'out.zip'
    assert_clean_failure(run_tool(f'--source={tmp_path / "nowhere"}', f'--dest={dest}'),
                         f'{tmp_path / "nowhere"} does not exist', str(dest))


def test_non_empty_dest_folder_is_refused_and_left_alone(tmp_path):
    make_folder(tmp_path / 'src', GOOD)
    (tmp_path / 'dest').mkdir()
    (tmp_path / 'dest' / 'keep.txt').write_text('mine')
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={tmp_path / "dest"}')
    assert result.exit_code == 1 and 'is a folder that is not empty' in result.stderr
    assert os.listdir(tmp_path / 'dest') == ['keep.txt']


def test_failed_run_leaves_an_existing_dest_zip_untouched(tmp_path):
    dest = tmp_path / 'data.zip'
    dest.write_bytes(b'previous dataset')
    make_folder(tmp_path / 'src', {**GOOD, 'z.png': b'broken'})
    result = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}', '--force')
    assert result.exit_code == 1 and 'z.png cannot be read' in result.stderr
    assert dest.read_bytes() == b'previous dataset'
    assert sorted(os.listdir(tmp_path)) == ['data.zip', 'src']

#----------------------------------------------------------------------------
