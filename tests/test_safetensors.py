"""Safetensors snapshots (torch_utils/safetensors_io.py, legacy.py --dest=x.safetensors): bit-exact round trips,
the same images as the pickle through gen_images.py, and refusal of anything that is not plain weights + JSON."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

safetensors_torch = pytest.importorskip('safetensors.torch', reason='the safetensors package is not installed')

import gen_images  # noqa: E402
import legacy  # noqa: E402
from tests.tiny_nets import FAMILIES, tiny_discriminator, tiny_generator, write_snapshot  # noqa: E402
from torch_utils import misc  # noqa: E402
from torch_utils import safe_pickle  # noqa: E402
from torch_utils import safetensors_io  # noqa: E402
from torch_utils.safe_pickle import CorruptPickleError  # noqa: E402
from training import augment  # noqa: E402
from training.network_families import FAMILIES as TABLE  # noqa: E402


def _assert_bit_identical(a, b):
    named_a, named_b = dict(misc.named_params_and_buffers(a)), dict(misc.named_params_and_buffers(b))
    assert named_a.keys() == named_b.keys()
    for name, tensor in named_a.items():
        assert tensor.dtype == named_b[name].dtype and torch.equal(tensor, named_b[name]), name


@pytest.mark.parametrize('family', FAMILIES)
def test_round_trip_is_bit_exact_for_G_D_G_ema_and_augment_pipe(family, tmp_path):
    G, G_ema, D = tiny_generator(family, seed=1), tiny_generator(family, seed=2), tiny_discriminator(seed=3)
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, scale=1).eval()
    pipe.p.fill_(0.37)
    data = dict(G=G, D=D, G_ema=G_ema, augment_pipe=pipe,
                training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='data.zip'))
    safetensors_io.save_network_safetensors(data, tmp_path / 'net.safetensors', TABLE)
    back = safe_pickle.load_network_pkl(str(tmp_path / 'net.safetensors'), families=TABLE)
    for key in ['G', 'D', 'G_ema', 'augment_pipe']:
        assert type(back[key]) is type(data[key])
        _assert_bit_identical(back[key], data[key])
        assert json.loads(json.dumps(back[key].init_kwargs)) == json.loads(json.dumps(data[key].init_kwargs))
    assert back['training_set_kwargs'] == data['training_set_kwargs']
    z = torch.randn([2, 16], generator=torch.Generator().manual_seed(0))
    assert torch.equal(back['G_ema'](z, None, noise_mode='const'), G_ema(z, None, noise_mode='const'))


def test_one_object_under_two_keys_is_stored_once_and_comes_back_shared(tmp_path):
    G = tiny_generator('stylegan2')
    safetensors_io.save_network_safetensors(dict(G=G, G_ema=G), tmp_path / 'net.safetensors', TABLE)
    names = safetensors_torch.load_file(str(tmp_path / 'net.safetensors')).keys()
    assert all(name.startswith('G.') for name in names)
    back = legacy.load_network_pkl(str(tmp_path / 'net.safetensors'))
    assert back['G'] is back['G_ema'] and back['D'] is None


@pytest.mark.parametrize('family', ['stylegan1', 'stylegan3-t'])
def test_safetensors_network_renders_the_same_seeds_as_its_pickle(family, tmp_path):
    pkl = write_snapshot(tmp_path / 'net.pkl', tiny_generator(family, seed=5), D=tiny_discriminator())
    result = CliRunner().invoke(legacy.main, ['--source', pkl, '--dest', str(tmp_path / 'net.safetensors')])
    assert result.exit_code == 0, result.output
    images = {}
    for name in ['net.pkl', 'net.safetensors']:
        result = CliRunner().invoke(gen_images.main, ['--network', str(tmp_path / name), '--seeds', '0-2',
                                                      '--outdir', str(tmp_path / f'out-{name}'),
                                                      '--device', 'cpu'])
        assert result.exit_code == 0, result.output
        images[name] = [np.asarray(PIL.Image.open(tmp_path / f'out-{name}' / f'seed{s:04d}.png')) for s in range(3)]
    for from_pkl, from_st in zip(images['net.pkl'], images['net.safetensors']):
        assert np.array_equal(from_pkl, from_st)
    assert not np.array_equal(images['net.pkl'][0], images['net.pkl'][1])


def test_safetensors_converts_back_to_a_pickle_with_legacy_py(tmp_path):
    G = tiny_generator('stylegan2', seed=7)
    safetensors_io.save_network_safetensors(dict(G=G, G_ema=G), tmp_path / 'a.safetensors', TABLE)
    result = CliRunner().invoke(legacy.main, ['--source', str(tmp_path / 'a.safetensors'), '--dest',
                                              str(tmp_path / 'b.pkl')])
    assert result.exit_code == 0, result.output
    _assert_bit_identical(legacy.load_network_pkl(str(tmp_path / 'b.pkl'))['G_ema'], G)

#----------------------------------------------------------------------------
# Refusals: every path from the file to a class, an argument or a size is checked.

def _write_crafted(path, networks, tensors=None, training_set_kwargs=None, fmt=safetensors_io.FORMAT):
    metadata = dict(format=fmt, networks=json.dumps(networks), training_set_kwargs=json.dumps(training_set_kwargs))
    with open(path, 'wb') as f:
        f.write(safetensors_torch.save(tensors or {'x': torch.zeros([1])}, metadata=metadata))
    return str(path)


def _valid_record():
    G = tiny_generator('stylegan2')
    record = safetensors_io.describe_network(G, TABLE)
    tensors = {f'G_ema.{k}': v.contiguous() for k, v in G.state_dict().items()}
    return record, tensors


@pytest.mark.parametrize('edit, message', [
    (lambda r: r.update(family='os'), 'unknown network family'),
    (lambda r: r.update(class_name='__class__'), 'bad class name'),
    (lambda r: r.update(class_name='Popen'), 'no network class'),
    (lambda r: r['init_kwargs'].update(__globals__=1), 'not a plain argument name'),
    (lambda r: r['init_kwargs'].update(img_resolution=1 << 30), 'outside'),
    (lambda r: r['init_kwargs'].update(channel_base='x' * 5000), 'characters'),
    (lambda r: r['init_kwargs'].update(mapping_kwargs=[[[[[[[[1]]]]]]]]), 'nested deeper'),
    (lambda r: r['init_kwargs'].update(channel_max=32), 'expects'),
    (lambda r: r['init_kwargs'].update(no_such_argument=1), 'cannot build'),
])
def test_refuses_bad_records_with_a_clear_error(edit, message, tmp_path):
    record, tensors = _valid_record()
    edit(record)
    path = _write_crafted(tmp_path / 'bad.safetensors', dict(G_ema=record), tensors)
    with pytest.raises(CorruptPickleError, match=message):
        legacy.load_network_pkl(path)


def test_refuses_a_dataset_class_that_is_not_ours(tmp_path):
    record, tensors = _valid_record()
    path = _write_crafted(tmp_path / 'bad.safetensors', dict(G_ema=record), tensors,
                          training_set_kwargs=dict(class_name='os.system', path='touch /tmp/owned'))
    with pytest.raises(CorruptPickleError, match='training_set_kwargs may only name'):
        legacy.load_network_pkl(path)


def test_refuses_missing_tensors_and_foreign_safetensors_files(tmp_path):
    record, tensors = _valid_record()
    tensors.pop(next(iter(tensors)))
    with pytest.raises(CorruptPickleError, match='missing'):
        legacy.load_network_pkl(_write_crafted(tmp_path / 'a.safetensors', dict(G_ema=record), tensors))
    with pytest.raises(CorruptPickleError, match='not a network snapshot of ours'):
        legacy.load_network_pkl(_write_crafted(tmp_path / 'b.safetensors', dict(G_ema=record), tensors, fmt='x'))
    with pytest.raises(CorruptPickleError, match='refers to a network'):
        legacy.load_network_pkl(_write_crafted(tmp_path / 'c.safetensors', dict(G=dict(same_as='D'))))


def test_truncated_file_is_a_clear_cli_error(tmp_path):
    G = tiny_generator('stylegan2')
    safetensors_io.save_network_safetensors(dict(G_ema=G), tmp_path / 'ok.safetensors', TABLE)
    payload = (tmp_path / 'ok.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(payload[:len(payload) // 2])
    result = CliRunner().invoke(gen_images.main, ['--network', str(tmp_path / 'cut.safetensors'), '--seeds', '0',
                                                  '--outdir', str(tmp_path / 'o'), '--device', 'cpu'])
    assert result.exit_code == 1 and 'cut.safetensors' in result.output and 'Traceback' not in result.output
    assert not os.path.exists(tmp_path / 'o' / 'seed0000.png')


def test_writer_refuses_classes_that_are_not_ours(tmp_path):
    with pytest.raises(safetensors_io.SafetensorsFormatError, match='not a network class of ours'):
        safetensors_io.save_network_safetensors(dict(G=torch.nn.Linear(2, 2)), tmp_path / 'x.safetensors', TABLE)
    assert not os.listdir(tmp_path)
