"""Style mixing (StyleGAN Sec. 3.1, Fig. 3): one image's ws with some layers taken from another image's ws.

The convention of the official style_mixing.py, which users compare against: a grid cell (row seed r, column
seed c) takes the row seed's ws and replaces the layers listed in `styles` (default 0-6: the coarse and middle
styles of a 1024 px network) by the column seed's ws. Truncation (if any) is applied to every layer's w before
mixing: w = w_avg + psi * (w - w_avg). Seeds map to z = numpy RandomState(seed).randn(z_dim), as gen_images.py.

Pure functions on tensors (no file I/O), so style_mixing.py and an interactive viewer share them.
"""

import numpy as np
import torch

#----------------------------------------------------------------------------

def check_style_layers(styles, num_ws):
    """The sorted unique layer indices of `styles`; ValueError naming the valid range if one is out of it."""
    styles = sorted(set(int(s) for s in styles))
    if not styles:
        raise ValueError(f'no style layers given (valid: 0-{num_ws - 1})')
    bad = [s for s in styles if not 0 <= s < num_ws]
    if bad:
        raise ValueError(f'style layer(s) {",".join(map(str, bad))} do not exist: this network has {num_ws} ws '
                         f'(valid layers 0-{num_ws - 1})')
    return styles


def mix_styles(row_ws, col_ws, styles):
    """ws of the mixed images: row_ws with the layers `styles` replaced by col_ws's.

    row_ws, col_ws: [N, num_ws, w_dim] (or broadcastable to it), styles: layer indices (checked).
    Returns a new [N, num_ws, w_dim] tensor; the inputs are not modified.
    """
    row_ws, col_ws = torch.broadcast_tensors(row_ws, col_ws)
    styles = check_style_layers(styles, row_ws.shape[1])
    mixed = row_ws.clone()
    mixed[:, styles] = col_ws[:, styles]
    return mixed


def seeds_to_ws(G, seeds, truncation_psi=1, label=None, device='cpu'):
    """ws of each seed: float32 tensor [len(seeds), num_ws, w_dim] on `device`, truncated on every layer.

    label: [1, c_dim] tensor for conditional networks (None = zeros).
    """
    zs = np.stack([np.random.RandomState(int(seed)).randn(G.z_dim) for seed in seeds])
    zs = torch.from_numpy(zs.astype(np.float32)).to(device)  # float32 on the host: MPS has no float64
    label = torch.zeros([1, G.c_dim], device=device) if label is None else label.to(device)
    with torch.no_grad():
        return G.mapping(zs, label.repeat([len(zs), 1]), truncation_psi=truncation_psi)


def mixing_grid_ws(G, row_seeds, col_seeds, styles, truncation_psi=1, label=None, device='cpu'):
    """(row_ws [R, num_ws, w_dim], col_ws [C, num_ws, w_dim], cell_ws [R, C, num_ws, w_dim]) of a mixing grid."""
    styles = check_style_layers(styles, G.num_ws)
    ws = seeds_to_ws(G, list(row_seeds) + list(col_seeds), truncation_psi, label, device)
    row_ws, col_ws = ws[:len(row_seeds)], ws[len(row_seeds):]
    num_rows, num_cols = len(row_seeds), len(col_seeds)
    pairs_row = row_ws[:, None].expand(num_rows, num_cols, *ws.shape[1:]).flatten(0, 1)  # [R * C, num_ws, w_dim]
    pairs_col = col_ws[None].expand(num_rows, num_cols, *ws.shape[1:]).flatten(0, 1)
    cell_ws = mix_styles(pairs_row, pairs_col, styles).reshape(num_rows, num_cols, *ws.shape[1:])
    return row_ws, col_ws, cell_ws

#----------------------------------------------------------------------------
