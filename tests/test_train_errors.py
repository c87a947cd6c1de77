"""train.py: expected failures print only the message (exit code 1, no traceback) and leave no run directory
(issue 14.6 and 16.4); stale temporary files of killed runs are removed at the next start."""

import os
import pickle

import pytest
import torch
from click.testing import CliRunner

import train
from torch_utils import safe_pickle
from training import networks_stylegan2
from training_helpers import write_shapes_folder

SMALL = ['--cfg=stylegan2', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=2',
         '--mbstd-group=2', '--aug=noaug', '--metrics=none', '--kimg=1', '--workers=0', '--device=cpu']


@pytest.fixture(scope='module')
def data32(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp('shapes32'), count=8, resolution=32)


@pytest.fixture(scope='module')
def snapshot16(tmp_path_factory):
    """A snapshot of a 16x16 run (same options as SMALL otherwise): resuming it on 32x32 data must fail."""
    torch.manual_seed(0)
    kwargs = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=16)
    G = networks_stylegan2.Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), **kwargs).eval()
    D = networks_stylegan2.Discriminator(**kwargs).eval()
    path = tmp_path_factory.mktemp('snap') / 'network-snapshot-000004.pkl'
    safe_pickle.save_network_pkl(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None), str(path))
    return str(path)


def _train(outdir, data, *extra):
    return CliRunner().invoke(train.main, ['--outdir', str(outdir), '--data', str(data), *SMALL, '--gpus=1', *extra])


def _assert_clean_failure(result, outdir, *fragments):
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), f'uncaught {result.exception!r}'
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert not os.path.exists(outdir) or os.listdir(outdir) == [], os.listdir(outdir)  # No run directory left.


def test_resume_of_another_resolution_lists_the_differences_and_leaves_no_run_dir(data32, snapshot16, tmp_path):
    result = _train(tmp_path / 'runs', data32, '--resume', snapshot16)
    _assert_clean_failure(result, tmp_path / 'runs', 'does not match this run', 'G resolution: pickle 16, run 32')
    assert not (tmp_path / 'runs').exists()  # --outdir was made by this run, and removed with it.


def test_a_run_dir_in_an_existing_outdir_is_removed_but_the_outdir_kept(data32, snapshot16, tmp_path):
    (tmp_path / 'runs').mkdir()
    _assert_clean_failure(_train(tmp_path / 'runs', data32, '--resume', snapshot16), tmp_path / 'runs')
    assert (tmp_path / 'runs').is_dir()


@pytest.mark.parametrize('content, fragment', [
    (b'hello, I am a text file\n', 'is a text file, not a network pickle'),
    (b'', 'is an empty file'),
    (None, 'truncated or corrupt'),                 # The first 2000 bytes of a real snapshot.
    ('torch.save', 'is a zip archive (a torch.save() file'),
    ('refused', 'refused'),
])
def test_unreadable_resume_files_are_messages(data32, snapshot16, tmp_path, content, fragment):
    path = tmp_path / 'resume.pkl'
    if content is None:
        path.write_bytes(open(snapshot16, 'rb').read()[:2000])
    elif content == 'torch.save':
        torch.save({'w': torch.zeros(2)}, path)
    elif content == 'refused':
        path.write_bytes(pickle.dumps(dict(G=os.getcwd)))  # A global the safe loader refuses.
    else:
        path.write_bytes(content)
    result = _train(tmp_path / 'runs', data32, '--resume', path)
    _assert_clean_failure(result, tmp_path / 'runs', fragment)
    assert '--allow-exec' not in result.output  # train.py has no such option: never suggest it.


@pytest.mark.parametrize('content', [b'', b'PK\x03\x04 truncated zip', b'not a zip at all'])
def test_empty_or_corrupt_zip_data_names_the_file(tmp_path, content):
    data = tmp_path / 'data.zip'
    data.write_bytes(content)
    _assert_clean_failure(_train(tmp_path / 'runs', data), tmp_path / 'runs', f'{data} is not a readable zip archive')


def test_outdir_that_is_a_file_is_refused_before_anything_starts(data32, tmp_path):
    (tmp_path / 'afile').write_text('x')
    for outdir in [tmp_path / 'afile', tmp_path / 'afile' / 'runs']:
        result = _train(outdir, data32)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert f'{tmp_path / "afile"} is a file, not a folder' in result.output




def test_a_full_disk_while_writing_run_files_names_the_file(tmp_path, monkeypatch):
    # The first image of the run (reals.png) hits a full disk: the same path as any snapshot or image write, reached
    # before the first (slow) training iteration.
    import errno

    import click
    from training import run_outputs  # Writes reals.png and fakes*.png (snapshots: training_loop).
    from training_helpers import tiny_options
    (tmp_path / 'data').mkdir()
    data = write_shapes_folder(tmp_path / 'data', count=8, resolution=16)
    real_write = run_outputs.write_file_atomic

    def full_disk(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_disk_for_images(path, write_fn, mode='wb'):
        return real_write(path, full_disk if path.endswith('.png') else write_fn, mode)

    monkeypatch.setattr(run_outputs, 'write_file_atomic', full_disk_for_images)
    options = tiny_options(data, tmp_path / 'unused', total_ticks=1, network_snapshot_ticks=1)
    options.pop('run_dir')
    options['run_desc'] = 'tiny'
    with pytest.raises(click.ClickException) as info:
        train.launch_or_explain(options, str(tmp_path / 'runs'))
    run_dir = tmp_path / 'runs' / '00000-tiny'
    assert info.value.message.startswith(f'cannot write {run_dir / "reals.png"}: {os.strerror(errno.ENOSPC)}')
    assert 'reals.png' not in os.listdir(run_dir)
    assert not [name for name in os.listdir(run_dir) if '.tmp' in name]


@pytest.mark.slow
def test_two_process_resume_mismatch_prints_the_message_and_leaves_no_run_dir(data32, snapshot16, tmp_path):
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data32, *SMALL,
                                             '--gpus=2', '--resume', snapshot16])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('metric, fragment', [
    ('nosuchmetric', '--metrics: unknown metric(s) nosuchmetric; valid: fid50k_full'),
    ('fid_AtoB', '--metrics: fid_AtoB measure CycleGAN snapshots (calc_metrics.py'),
])
def test_a_bad_metric_name_is_one_line(data32, tmp_path, metric, fragment):
    result = _train(tmp_path / 'runs', data32, f'--metrics={metric}')
    _assert_clean_failure(result, tmp_path / 'runs', fragment)
    assert 'Traceback' not in result.output
    assert metric == 'fid_AtoB' or 'fid_AtoB' not in result.output  # Not offered to a StyleGAN run.
