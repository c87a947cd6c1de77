"""demo.py: every device preset is an ordinary train.py command line (checked with train.py --dry-run)."""

import json

import PIL.Image
import pytest
from click.testing import CliRunner

import demo
import train
from training.shapes_dataset import render_shape_image


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('shapes32')
    for idx in range(8):
        PIL.Image.fromarray(render_shape_image(idx, 32)[0]).save(path / f'img{idx:08d}.png')
    return str(path)


def _dry_run_options(args):
    result = CliRunner().invoke(train.main, args + ['--dry-run'])
    assert result.exit_code == 0, result.output
    text = result.output[result.output.index('{'):result.output.rindex('}') + 1]
    return json.loads(text)


@pytest.mark.parametrize('device', sorted(demo.PRESETS))
def test_demo_presets_are_train_py_command_lines(device, shapes_dir, tmp_path):
    args = demo.train_args(shapes_dir, str(tmp_path / 'runs'), device, 8, 'stylegan2')
    assert args[0] == 'train.py' and f'--device={device}' in args
    # Checked on this machine's CPU: the device changes where train.py runs, not which options it accepts.
    options = _dry_run_options([arg if not arg.startswith('--device=') else '--device=cpu' for arg in args[1:]])
    preset = demo.PRESETS[device]
    assert options['batch_size'] == preset['batch'] and options['max_minutes'] == 8
    assert options['G_kwargs']['channel_base'] == preset['cbase']
    assert options['G_kwargs']['channel_max'] == preset['cmax']
    expected_glr = preset['glr'] if preset['glr'] is not None else 0.002  # The stylegan2 default.
    assert options['G_opt_kwargs']['lr'] == expected_glr
    assert options['loss_kwargs']['r1_gamma'] == preset['gamma']


def test_cpu_demo_drops_path_length_and_mixing_and_uses_groups_of_8(shapes_dir, tmp_path):
    args = demo.train_args(shapes_dir, str(tmp_path / 'runs'), 'cpu', 8, 'stylegan2')
    options = _dry_run_options(args[1:])
    assert options['loss_kwargs'].get('pl_weight', 0) == 0
    assert options['loss_kwargs'].get('style_mixing_prob', 0) == 0
    assert options['G_reg_interval'] is None  # No G regularisation phase at all, not one that adds zero.
    assert options['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == 8
    # 16 channels at 32x32, 32 at 16x16, 64 at 8x8 and 4x4: min(cbase / resolution, cmax).
    assert (options['G_kwargs']['channel_base'], options['G_kwargs']['channel_max']) == (512, 64)


@pytest.mark.parametrize('cfg', ['stylegan3-t', 'stylegan1'])
def test_cpu_demo_keeps_previous_widths_for_other_cfgs(cfg, shapes_dir, tmp_path):
    options = _dry_run_options(demo.train_args(shapes_dir, str(tmp_path / 'runs'), 'cpu', 8, cfg)[1:])
    assert (options['G_kwargs']['channel_base'], options['G_kwargs']['channel_max']) == (2048, 32)
    assert options['D_kwargs']['channel_base'] == 2048
