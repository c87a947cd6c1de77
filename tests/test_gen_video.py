"""gen_video.py: seed layout, the periodic W spline, frames, mp4 / PNG output, pickles of ours and official ones.

Networks are tiny (16 px, 8 channels) and videos a few frames long, so the whole file runs in seconds on a CPU.
Expected images are computed independently with G(z, c, truncation_psi) and numpy, not through gen_video.
"""

import os
import pickle
import sys

import numpy as np
import PIL.Image
import pytest
import scipy.interpolate
import torch
from click.testing import CliRunner

import gen_video
from training import networks_stylegan2 as nets2
from training import networks_stylegan3 as nets3

TINY_SG2 = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                mapping_kwargs=dict(num_layers=2))
TINY_SG3 = dict(TINY_SG2, num_layers=4)

#----------------------------------------------------------------------------
# Helpers.

def _tiny_G(nets=nets2, seed=0, **kwargs):
    """A freshly initialised tiny generator in eval mode, with a random w_avg so that truncation matters."""
    torch.manual_seed(seed)
    G = nets.Generator(**{**(TINY_SG3 if nets is nets3 else TINY_SG2), **kwargs})
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    return G.eval().requires_grad_(False)


def _write_our_pickle(G, path):
    """A snapshot as our training writes it: pickle.dump of a plain dict of persistent networks."""
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    return str(path)


def _expected_image(G, seed, truncation_psi=1, class_idx=None):
    """uint8 [H, W, C] of G at the z that numpy RandomState(seed) draws (the gen_images convention)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros([1, G.c_dim])
    if class_idx is not None:
        c[0, class_idx] = 1
    with torch.no_grad():
        img = G(z, c, truncation_psi=truncation_psi, noise_mode='const')
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def _run(args):
    return CliRunner().invoke(gen_video.main, [*args, '--device=cpu'])


def _read_png(path):
    return np.asarray(PIL.Image.open(path))


def _max_diff(a, b):
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())

#----------------------------------------------------------------------------
# Seed layout.

def test_each_cell_takes_consecutive_seeds_as_its_keyframes():
    seed_grid = gen_video.layout_seeds(list(range(100, 112)), grid_w=3, grid_h=2)
    assert seed_grid.shape == (2, 3, 2)
    for y in range(2):
        for x in range(3):
            for k in range(2):
                assert seed_grid[y, x, k] == 100 + (y * 3 + x) * 2 + k


def test_explicit_num_keyframes_repeats_the_seeds_cyclically():
    seed_grid = gen_video.layout_seeds([5, 6, 7], grid_w=2, grid_h=1, num_keyframes=3)
    assert seed_grid.reshape(-1).tolist() == [5, 6, 7, 5, 6, 7]


def test_shuffle_seed_permutes_the_seeds_reproducibly():
    seeds = list(range(20))
    first = gen_video.layout_seeds(seeds, 2, 2, shuffle_seed=3)
    assert np.array_equal(first, gen_video.layout_seeds(seeds, 2, 2, shuffle_seed=3))
    assert sorted(first.reshape(-1).tolist()) == seeds
    assert first.reshape(-1).tolist() != seeds
    assert not np.array_equal(first, gen_video.layout_seeds(seeds, 2, 2, shuffle_seed=4))


@pytest.mark.parametrize('num_seeds', [5, 1, 7])
def test_seeds_that_do_not_fill_the_grid_are_a_clear_error(num_seeds):
    with pytest.raises(ValueError, match=rf'{num_seeds} seed\(s\) do not fill a 3x2 grid.*multiple of 6'):
        gen_video.layout_seeds(list(range(num_seeds)), grid_w=3, grid_h=2)


def test_cli_refuses_seeds_that_do_not_fill_the_grid_before_loading_anything(tmp_path):
    result = _run(['--network', str(tmp_path / 'missing.pkl'), '--seeds=0-4', '--grid=2x2',
                   '--output', str(tmp_path / 'out.mp4')])
    assert result.exit_code == 2
    assert '5 seed(s) do not fill a 2x2 grid' in result.output and '--num-keyframes' in result.output
    assert not os.listdir(tmp_path)

#----------------------------------------------------------------------------
# The periodic spline in W.

def test_spline_passes_through_every_keyframe_and_loops_with_continuous_derivatives():
    keyframes = np.random.RandomState(0).randn(5, 3, 4, 8)
    spline = gen_video.periodic_w_spline(keyframes)
    for k in range(5):
        np.testing.assert_allclose(spline(k), keyframes[k], atol=1e-12)
    for order in range(3):  # value, slope and curvature match across the seam t = K == t = 0
        np.testing.assert_allclose(spline(5.0, order), spline(0.0, order), atol=1e-9)
    np.testing.assert_allclose(spline(5.3), spline(0.3), atol=1e-12)  # beyond K it wraps around


def test_spline_matches_a_cubic_through_many_tiled_periods():
    # Independent construction: a not-a-knot cubic through 9 copies of the keyframes is periodic in the middle
    # copy up to an error that decays geometrically with the distance to the ends.
    keyframes = np.random.RandomState(1).randn(4, 6)
    knots = np.arange(-16, 20)
    tiled = scipy.interpolate.interp1d(knots, np.tile(keyframes, [9, 1]), kind='cubic', axis=0)
    times = np.linspace(0, 4, 33)
    np.testing.assert_allclose(gen_video.periodic_w_spline(keyframes)(times), tiled(times), atol=1e-6)


def test_a_single_keyframe_gives_a_still_video():
    keyframe = np.random.RandomState(2).randn(1, 2, 3)
    spline = gen_video.periodic_w_spline(keyframe)
    np.testing.assert_allclose(spline(np.linspace(0, 1, 7)), np.repeat(keyframe, 7, axis=0), atol=1e-12)

#----------------------------------------------------------------------------
# Frames.

def test_first_frame_is_G_at_the_first_keyframe_of_every_cell_in_grid_order(tmp_path):
    G = _tiny_G()
    pkl = _write_our_pickle(G, tmp_path / 'network-snapshot-000000.pkl')
    out_dir = tmp_path / 'frames'
    result = _run(['--network', pkl, '--seeds=10-15', '--grid=3x1', '--w-frames=2', '--trunc=0.7', '--batch=2',
                   '--output', f'{out_dir}/'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out_dir)) == [f'frame{i:06d}.png' for i in range(4)]  # 2 keyframes x 2 w-frames
    # Cell x holds seeds 10 + 2x (keyframe 0) and 11 + 2x (keyframe 1).
    expected = np.concatenate([_expected_image(G, 10 + 2 * x, truncation_psi=0.7) for x in range(3)], axis=1)
    first = _read_png(out_dir / 'frame000000.png')
    assert first.shape == (16, 48, 3)
    assert _max_diff(first, expected) <= 1
    halfway = np.concatenate([_expected_image(G, 11 + 2 * x, truncation_psi=0.7) for x in range(3)], axis=1)
    assert _max_diff(_read_png(out_dir / 'frame000002.png'), halfway) <= 1  # t = 1: the second keyframe
    assert _max_diff(halfway, expected) > 10 and _max_diff(expected[:, :16], expected[:, 16:32]) > 10


def test_frame_after_the_last_equals_the_first_and_the_frames_move():
    G = _tiny_G(seed=1)
    grid_w, grid_h, w_frames = 2, 2, 3
    seed_grid = gen_video.layout_seeds(list(range(8)), grid_w, grid_h)
    spline = gen_video.periodic_w_spline(gen_video.keyframe_ws(G, seed_grid, torch.zeros([1, 0])))
    num_frames = seed_grid.shape[2] * w_frames
    frames = list(gen_video.render_frames(G, spline, [0, 1, num_frames - 1, num_frames], w_frames, grid_w, grid_h,
                                          batch_size=3))
    assert frames[0].shape == (32, 32, 3)
    assert _max_diff(frames[3], frames[0]) <= 1
    assert _max_diff(frames[1], frames[0]) > 10 and _max_diff(frames[2], frames[0]) > 10


def test_grid_puts_cells_row_by_row():
    cells = np.arange(6).reshape(6, 1, 1, 1) * np.ones([6, 2, 3, 1], dtype=np.int64)
    grid = gen_video.assemble_grid(cells, grid_w=3, grid_h=2)
    assert grid.shape == (4, 9, 1)
    assert grid[::2, ::3, 0].tolist() == [[0, 1, 2], [3, 4, 5]]

#----------------------------------------------------------------------------
# Output files.

def test_mp4_has_keyframes_times_w_frames_frames_of_the_grid_size_at_60_fps(tmp_path):
    imageio = pytest.importorskip('imageio')
    pytest.importorskip('imageio_ffmpeg', reason='imageio-ffmpeg is needed to write mp4 files')
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'net.pkl')
    out = tmp_path / 'video.mp4'
    result = _run(['--network', pkl, '--seeds=0-8', '--grid=3x1', '--w-frames=4', '--batch=2',
                   '--output', str(out)])
    assert result.exit_code == 0, result.output
    assert 'Wrote 12 frames' in result.output
    with imageio.get_reader(str(out), format='FFMPEG') as reader:
        frames = [frame for frame in reader]
        meta = reader.get_meta_data()
    assert len(frames) == 3 * 4 and meta['fps'] == 60 and meta['codec'] == 'h264'
    assert frames[0].shape == (16, 48, 3)
    assert sorted(os.listdir(tmp_path)) == ['net.pkl', 'video.mp4']  # no temporary file left behind
    # The same frames as the lossless PNG mode, up to H.264 loss (4:2:0 chroma hits these tiny noisy images:
    # mean error ~10 levels, against ~65 between unrelated frames).
    result = _run(['--network', pkl, '--seeds=0-8', '--grid=3x1', '--w-frames=4', '--output', f'{tmp_path / "png"}/'])
    assert result.exit_code == 0, result.output
    for index in [0, 5, 11]:
        png = _read_png(tmp_path / 'png' / f'frame{index:06d}.png').astype(np.float64)
        assert np.abs(frames[index] - png).mean() < 20


def test_missing_ffmpeg_falls_back_to_png_frames_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)  # makes `import imageio_ffmpeg` fail
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'net.pkl')
    result = _run(['--network', pkl, '--seeds=0,1', '--w-frames=2', '--output', str(tmp_path / 'v.mp4')])
    assert result.exit_code == 0, result.output
    assert 'No ffmpeg' in result.output and f'PNG frames to {tmp_path / "v"}{os.sep}' in result.output
    assert sorted(os.listdir(tmp_path / 'v')) == [f'frame{i:06d}.png' for i in range(4)]
    assert not (tmp_path / 'v.mp4').exists()
    G = _tiny_G()
    assert _max_diff(_read_png(tmp_path / 'v' / 'frame000000.png'), _expected_image(G, 0)) <= 1


def test_output_in_a_missing_folder_or_under_a_file_is_a_message(tmp_path):
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'net.pkl')
    (tmp_path / 'afile').write_text('x')
    for output in [str(tmp_path / 'missing' / 'v.mp4'), str(tmp_path / 'afile' / 'v.mp4'),
                   f'{tmp_path / "missing" / "frames"}/']:
        result = _run(['--network', pkl, '--seeds=0', '--w-frames=1', '--output', output])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert 'create it first' in result.output and 'Traceback' not in result.output


def test_an_existing_empty_directory_gets_the_frames_and_a_nonempty_one_is_refused(tmp_path):
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'net.pkl')
    (tmp_path / 'empty').mkdir()
    assert _run(['--network', pkl, '--seeds=3', '--w-frames=2', '--output', str(tmp_path / 'empty')]).exit_code == 0
    assert sorted(os.listdir(tmp_path / 'empty')) == ['frame000000.png', 'frame000001.png']
    result = _run(['--network', pkl, '--seeds=3', '--w-frames=2', '--output', str(tmp_path / 'empty')])
    assert result.exit_code == 2 and 'is not empty' in result.output
    result = _run(['--network', pkl, '--seeds=3', '--output', str(tmp_path / 'noext')])
    assert result.exit_code == 2 and 'no file extension' in result.output


def test_a_failure_while_rendering_leaves_no_output_behind(tmp_path):
    G = _tiny_G()
    calls = []

    def failing_synthesis(ws, **kwargs):
        calls.append(len(ws))
        if len(calls) > 1:
            raise RuntimeError('out of memory (simulated)')
        return torch.zeros([len(ws), 3, 16, 16])
    G.synthesis.forward = failing_synthesis
    for output in [f'{tmp_path / "frames"}/', str(tmp_path / 'video.mp4')]:
        calls.clear()
        with pytest.raises(RuntimeError, match='simulated'):
            gen_video.generate_video(G, output, [0, 1], w_frames=3, batch_size=1)
        assert os.listdir(tmp_path) == []

#----------------------------------------------------------------------------
# Networks: conditional, StyleGAN3, official-layout pickles.

def test_conditional_network_renders_the_requested_class_and_needs_one(tmp_path):
    G = _tiny_G(c_dim=3)
    pkl = _write_our_pickle(G, tmp_path / 'net.pkl')
    result = _run(['--network', pkl, '--seeds=4', '--w-frames=2', '--output', f'{tmp_path / "none"}/'])
    assert result.exit_code == 2 and '--class=0..2' in result.output
    result = _run(['--network', pkl, '--seeds=4', '--w-frames=1', '--class=2', '--output', f'{tmp_path / "c2"}/'])
    assert result.exit_code == 0, result.output
    frame = _read_png(tmp_path / 'c2' / 'frame000000.png')
    assert _max_diff(frame, _expected_image(G, 4, class_idx=2)) <= 1
    assert _max_diff(frame, _expected_image(G, 4, class_idx=0)) > 10


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan2-ada', 'stylegan3'])
def test_official_layout_pickles_render_like_the_network_they_hold(tmp_path, family):
    test_legacy = pytest.importorskip('test_legacy', reason='tests/test_legacy.py builds official-layout pickles')
    G = _tiny_G(nets3 if family == 'stylegan3' else nets2, seed=2)
    extra = dict(sg2_family='stylegan2-ada', state_edit=test_legacy._ada_state) if family == 'stylegan2-ada' else {}
    pkl = tmp_path / 'official.pkl'
    pkl.write_bytes(test_legacy._official_bytes(dict(G=G, D=None, G_ema=G, augment_pipe=None,
                                                     training_set_kwargs=None), **extra))
    result = _run(['--network', str(pkl), '--seeds=7,8', '--w-frames=2', '--trunc=0.5',
                   '--output', f'{tmp_path / "frames"}/'])
    assert result.exit_code == 0, result.output
    assert _max_diff(_read_png(tmp_path / 'frames' / 'frame000000.png'), _expected_image(G, 7, 0.5)) <= 1
    assert _max_diff(_read_png(tmp_path / 'frames' / 'frame000002.png'), _expected_image(G, 8, 0.5)) <= 1
    assert _max_diff(_expected_image(G, 7, 0.5), _expected_image(G, 8, 0.5)) > 5
    assert _max_diff(_expected_image(G, 7, 0.5), _expected_image(G, 7, 1)) > 5


def test_grid_option_parses_columns_by_rows():
    assert gen_video.parse_grid('4x2') == (4, 2) and gen_video.parse_grid('3,1') == (3, 1)
    for bad in ['4', '0x2', 'ax2', '2x2x2']:
        with pytest.raises(Exception, match='grid size like 4x2'):
            gen_video.parse_grid(bad)

#----------------------------------------------------------------------------


def test_temp_outputs_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    import subprocess
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'net.pkl')
    (tmp_path / f'frames.tmp{dead.pid}').mkdir()
    (tmp_path / f'frames.tmp{dead.pid}' / 'frame000000.png').write_bytes(b'x')
    (tmp_path / f'v.mp4.tmp{dead.pid}.mp4').write_bytes(b'half a video')
    assert _run(['--network', pkl, '--seeds=3', '--w-frames=1', '--output', f'{tmp_path / "frames"}/']).exit_code == 0
    assert sorted(os.listdir(tmp_path)) == ['frames', 'net.pkl', f'v.mp4.tmp{dead.pid}.mp4']  # Only its own.


def test_precision_bf16_frames_are_close_to_float32(tmp_path):
    pkl = _write_our_pickle(_tiny_G(), tmp_path / 'network-snapshot-000000.pkl')
    frames = {}
    for precision in ('fp32', 'bf16'):
        out_dir = tmp_path / precision
        result = _run(['--network', pkl, '--seeds=10-11', '--grid=1x1', '--w-frames=2', '--output', f'{out_dir}/',
                       '--precision', precision])
        assert result.exit_code == 0, result.output
        frames[precision] = np.stack([_read_png(out_dir / f'frame{i:06d}.png') for i in range(4)]).astype(np.int32)
    difference = np.abs(frames['fp32'] - frames['bf16'])
    assert difference.mean() < 2 and difference.max() > 0  # bfloat16 ran, ~1 level of 255 off.
