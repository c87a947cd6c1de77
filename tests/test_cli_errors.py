"""Bad input to gen_images.py / gen_video.py gives a message and exit code 1 or 2, never a traceback (issue 14.6).

Each case is a loadable-but-wrong pickle or an option value that used to end in a Python traceback."""

import copy
import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import gen_images
import gen_video
from torch_utils import safe_pickle
from training import networks_stylegan2

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)


def _save(path, G_ema, D=None):
    safe_pickle.save_network_pkl(dict(G=G_ema, D=D, G_ema=G_ema, augment_pipe=None, training_set_kwargs=None),
                                 str(path))
    return str(path)


@pytest.fixture(scope='module')
def nets():
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(c_dim=0, mapping_kwargs=dict(num_layers=2), **TINY).eval()
    D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128,
                                         channel_max=16).eval()
    return G, D


def _gen_images(*args):
    return CliRunner().invoke(gen_images.main, [str(a) for a in args] + ['--device', 'cpu'])


def _assert_message(result, exit_code, *fragments):
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), f'uncaught {result.exception!r}'  # Not a traceback.
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_a_discriminator_stored_as_G_ema_is_named(nets, tmp_path):
    G, D = nets
    pkl = _save(tmp_path / 'd.pkl', D, D)
    _assert_message(_gen_images('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'o'), 1,
                    f'--network={pkl}: G_ema is a Discriminator', 'not a generator')


def test_a_weight_of_the_wrong_shape_is_named(nets, tmp_path):
    G = copy.deepcopy(nets[0])
    G.mapping.fc0.weight = torch.nn.Parameter(torch.zeros(3, 3))
    pkl = _save(tmp_path / 'w.pkl', G)
    _assert_message(_gen_images('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'o'), 1,
                    'w.pkl: G_ema cannot run', 'do not fit')
    assert not os.listdir(tmp_path / 'o')


@pytest.mark.parametrize('name, value', [('z_dim', 10**12), ('img_resolution', -4), ('c_dim', 2.5)])
def test_absurd_dimensions_are_refused_before_any_allocation(nets, tmp_path, name, value):
    G = copy.deepcopy(nets[0])
    setattr(G, name, value)
    pkl = _save(tmp_path / 'absurd.pkl', G)
    _assert_message(_gen_images('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'o'), 1,
                    f'--network={pkl}: ', f'{name}={value!r}')


def test_a_torch_save_zip_says_what_it_is(tmp_path):
    path = tmp_path / 'weights.pt'
    torch.save({'w': torch.zeros(3)}, path)
    _assert_message(_gen_images('--network', path, '--seeds', '0', '--outdir', tmp_path / 'o'), 1,
                    f'--network={path}: it is a zip archive (a torch.save() file')


@pytest.mark.parametrize('seeds', ['4294967296', '0,99999999999'])
def test_seeds_beyond_2_to_the_32_are_refused(nets, tmp_path, seeds):
    pkl = _save(tmp_path / 'g.pkl', nets[0])
    _assert_message(_gen_images('--network', pkl, '--seeds', seeds, '--outdir', tmp_path / 'o'), 2,
                    'seeds must be 0..4294967295')
    result = _gen_images('--network', pkl, '--seeds', '4294967295', '--outdir', tmp_path / 'o')
    assert result.exit_code == 0 and os.listdir(tmp_path / 'o') == ['seed4294967295.png']


@pytest.mark.parametrize('trunc', ['nan', 'inf', '-inf'])
def test_non_finite_truncation_is_refused_by_both_tools(nets, tmp_path, trunc):
    pkl = _save(tmp_path / 'g.pkl', nets[0])
    _assert_message(_gen_images('--network', pkl, '--seeds', '0', '--trunc', trunc, '--outdir', tmp_path / 'o'), 2,
                    'not a finite number')
    assert not (tmp_path / 'o').exists()
    result = CliRunner().invoke(gen_video.main, ['--network', pkl, '--seeds', '0', '--trunc', trunc, '--output',
                                                 f'{tmp_path / "f"}/', '--device', 'cpu'])
    _assert_message(result, 2, 'not a finite number')


def test_outdir_that_is_a_file_or_under_one_is_named(nets, tmp_path):
    pkl = _save(tmp_path / 'g.pkl', nets[0])
    (tmp_path / 'afile').write_text('x')
    for outdir in [tmp_path / 'afile', tmp_path / 'afile' / 'sub']:
        _assert_message(_gen_images('--network', pkl, '--seeds', '0', '--outdir', outdir), 2,
                        str(outdir))


def test_stale_temp_files_of_dead_processes_are_removed_from_outdir(nets, tmp_path):
    pkl = _save(tmp_path / 'g.pkl', nets[0])
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / f'seed0001.png.tmp{dead.pid}').write_bytes(b'half a png')
    assert _gen_images('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'o').exit_code == 0
    assert os.listdir(tmp_path / 'o') == ['seed0000.png']


def test_a_full_disk_names_the_file_and_leaves_no_temp_file(nets, tmp_path):
    pkl = _save(tmp_path / 'g.pkl', nets[0])

    def limit_file_size():  # write() past 100 bytes fails with EFBIG, as a full disk fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'gen_images.py'), '--network', pkl,
                             '--seeds', '0', '--outdir', str(tmp_path / 'o'), '--device', 'cpu'],
                            capture_output=True, text=True, preexec_fn=limit_file_size, cwd=REPO_ROOT)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
    assert f'cannot write {tmp_path / "o" / "seed0000.png"}: {os.strerror(errno.EFBIG)}' in result.stderr
    assert os.listdir(tmp_path / 'o') == []
