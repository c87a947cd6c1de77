"""style_mixing.py and training/style_mixing.py: a cell equals a direct G call with the mixed ws (official
convention: row seed's ws, column seed's ws on the --styles layers), for StyleGAN1, 2 and 3."""

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import style_mixing
from tests.tiny_nets import tiny_generator, write_snapshot
from training.style_mixing import check_style_layers, mix_styles


def test_mix_styles_takes_the_listed_layers_from_the_column_ws():
    row = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    col = -torch.ones([1, 5, 3])
    mixed = mix_styles(row, col, [3, 1, 1])
    assert mixed.shape == (2, 5, 3)
    for layer in range(5):
        expected = col[:, layer].expand(2, 3) if layer in (1, 3) else row[:, layer]
        assert torch.equal(mixed[:, layer], expected)
    assert row.min() == 0  # inputs untouched


def test_style_layers_outside_the_network_are_a_clear_error():
    assert check_style_layers([4, 0, 4], num_ws=6) == [0, 4]
    with pytest.raises(ValueError, match=r'6,7 do not exist: this network has 6 ws \(valid layers 0-5\)'):
        check_style_layers(range(8), num_ws=6)


def _direct_image(G, row_seed, col_seed, styles, psi):
    """The cell computed independently: per-seed mapping, truncation by hand, layers spliced with torch.cat."""
    def w_of(seed):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        w = G.mapping(z, None)
        return G.mapping.w_avg + (w - G.mapping.w_avg) * psi
    w_row, w_col = w_of(row_seed), w_of(col_seed)
    layers = [w_col[:, i:i + 1] if i in styles else w_row[:, i:i + 1] for i in range(G.num_ws)]
    with torch.no_grad():
        img = G.synthesis(torch.cat(layers, dim=1), noise_mode='const')
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy().astype(int)


@pytest.mark.parametrize('family', ['stylegan1', 'stylegan2', 'stylegan3-t'])
def test_cells_and_grid_equal_direct_G_calls_with_the_mixed_ws(family, tmp_path):
    G = tiny_generator(family, seed=3)
    pkl = write_snapshot(tmp_path / 'net.pkl', G)
    rows, cols, styles = [85, 100], [55, 821, 1789], [0, 1, 2]
    result = CliRunner().invoke(style_mixing.main, ['--network', pkl, '--rows', '85,100', '--cols', '55,821,1789',
                                                    '--styles', '0-2', '--trunc', '0.8', '--outdir',
                                                    str(tmp_path / 'out'), '--device', 'cpu', '--batch', '4'])
    assert result.exit_code == 0, result.output
    grid = np.asarray(PIL.Image.open(tmp_path / 'out' / 'grid.png')).astype(int)
    assert grid.shape == (16 * 3, 16 * 4, 3)
    assert grid[:16, :16].max() == 0  # blank corner
    for r, row_seed in enumerate(rows):
        plain_row = _direct_image(G, row_seed, row_seed, [], 0.8)
        assert np.abs(grid[16 * (r + 1):16 * (r + 2), :16] - plain_row).max() <= 1
        for c, col_seed in enumerate(cols):
            cell = np.asarray(PIL.Image.open(tmp_path / 'out' / f'{row_seed}-{col_seed}.png')).astype(int)
            expected = _direct_image(G, row_seed, col_seed, styles, 0.8)
            assert np.abs(cell - expected).max() <= 1
            assert np.array_equal(grid[16 * (r + 1):16 * (r + 2), 16 * (c + 1):16 * (c + 2)], cell)
            assert np.abs(cell - plain_row).mean() > 0.1  # the column's styles changed the image
    for c, col_seed in enumerate(cols):
        assert np.abs(grid[:16, 16 * (c + 1):16 * (c + 2)] - _direct_image(G, col_seed, col_seed, [], 0.8)).max() <= 1


def test_styles_beyond_num_ws_is_a_usage_error(tmp_path):
    pkl = write_snapshot(tmp_path / 'net.pkl', tiny_generator('stylegan2'))
    result = CliRunner().invoke(style_mixing.main, ['--network', pkl, '--rows', '1', '--cols', '2', '--outdir',
                                                    str(tmp_path / 'out'), '--device', 'cpu'])  # default 0-6
    assert result.exit_code == 2 and '--styles' in result.output and 'has 6 ws' in result.output
    assert 'Traceback' not in result.output


@pytest.mark.parametrize('family', ['stylegan2', 'stylegan3-t'])  # StyleGAN1 is built all-float32 (num_fp16_res=0).
def test_precision_bf16_grid_is_close_to_float32(family, tmp_path):
    pkl = write_snapshot(tmp_path / 'net.pkl', tiny_generator(family, seed=3))
    grids = {}
    for precision in ('fp32', 'bf16'):
        result = CliRunner().invoke(style_mixing.main, ['--network', pkl, '--rows', '85,100', '--cols', '55,821',
                                                        '--styles', '0-2', '--outdir', str(tmp_path / precision),
                                                        '--device', 'cpu', '--precision', precision])
        assert result.exit_code == 0, result.output
        grids[precision] = np.asarray(PIL.Image.open(tmp_path / precision / 'grid.png')).astype(int)
    difference = np.abs(grids['fp32'] - grids['bf16'])
    assert difference.mean() < 2 and difference.max() > 0  # bfloat16 ran, ~1 level of 255 off.
