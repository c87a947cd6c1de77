"""A small browser viewer for a trained generator: pick seed, truncation, class, noise, style mixing and (StyleGAN3)
translation/rotation; the server renders each image and returns it as PNG.

Example:
    python viewer.py --network=training-runs/00000-.../network-snapshot-000100.pkl     # then open the printed URL

HTTP interface (GET): `/` the page, `/info` the network as JSON, `/render?seed=..&trunc=..` a PNG (parameters in
parse_render_params); bad parameters get 400 with a one-line message. Only the standard library's HTTP server is
used. It binds to 127.0.0.1 unless --host says otherwise: the viewer has no authentication.
"""

import dataclasses
import http.server
import io
import ipaddress
import json
import math
import os
import threading
import urllib.parse

import click
import numpy as np
import PIL.Image
import torch

import gen_images
from dnnlib import cli
from training import style_mixing

MAX_SEED = 2 ** 32 - 1              # numpy RandomState seeds.
MAX_ABS_TRUNC = 4.0                 # Beyond this, truncation "psi" is extrapolation into noise.
MAX_ABS_TRANSLATE = 4.0             # In image units (the image spans about [-0.5, 0.5]).
PAGE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'viewer.html')

#----------------------------------------------------------------------------

class BadParameter(ValueError):
    """A render parameter that cannot be used; its message goes back to the browser with HTTP 400."""


@dataclasses.dataclass(frozen=True)
class RenderParams:
    seed: int = 0
    trunc: float = 1.0
    class_idx: int = None
    noise_mode: str = 'const'
    mix_seed: int = None            # Seed whose ws replace layers [mix_start, mix_end) (None = no mixing).
    mix_start: int = 0
    mix_end: int = 0
    translate: tuple = (0.0, 0.0)   # StyleGAN3 only.
    rotate: float = 0.0             # Degrees, StyleGAN3 only.


def _number(query, name, kind, default, lo, hi):
    """query[name] as kind (int or float) within [lo, hi], or default when absent/empty; BadParameter otherwise."""
    text = query.get(name, [''])[-1].strip()
    if text == '':
        return default
    try:
        value = kind(text)
    except ValueError:
        raise BadParameter(f'{name}={text!r} is not {"an integer" if kind is int else "a number"}') from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise BadParameter(f'{name}={text} is outside {lo}..{hi}')
    return value


def parse_render_params(query, num_ws, c_dim, is_stylegan3):
    """RenderParams from a parsed query string ({name: [values]}), checked against the network. Names: seed, trunc,
    class, noise (const|random|none), mix_seed, mix_start, mix_end (ws layers, end exclusive), tx, ty, rotate."""
    known = {'seed', 'trunc', 'class', 'noise', 'mix_seed', 'mix_start', 'mix_end', 'tx', 'ty', 'rotate', 't'}
    unknown = sorted(set(query) - known)
    if unknown:
        raise BadParameter(f'unknown parameter {unknown[0]!r}; expected some of {sorted(known - {"t"})}')
    noise_mode = query.get('noise', ['const'])[-1] or 'const'
    if noise_mode not in ('const', 'random', 'none'):
        raise BadParameter(f'noise={noise_mode!r} must be const, random or none')
    class_idx = _number(query, 'class', int, None, 0, max(c_dim - 1, 0))
    if c_dim > 0 and class_idx is None:
        raise BadParameter(f'the network is conditional: class=0..{c_dim - 1} is required')
    params = RenderParams(
        seed=_number(query, 'seed', int, 0, 0, MAX_SEED),
        trunc=_number(query, 'trunc', float, 1.0, -MAX_ABS_TRUNC, MAX_ABS_TRUNC),
        class_idx=class_idx if c_dim > 0 else None, noise_mode=noise_mode,
        mix_seed=_number(query, 'mix_seed', int, None, 0, MAX_SEED),
        mix_start=_number(query, 'mix_start', int, 0, 0, num_ws),
        mix_end=_number(query, 'mix_end', int, num_ws, 0, num_ws),
        translate=(_number(query, 'tx', float, 0.0, -MAX_ABS_TRANSLATE, MAX_ABS_TRANSLATE),
                   _number(query, 'ty', float, 0.0, -MAX_ABS_TRANSLATE, MAX_ABS_TRANSLATE)),
        rotate=_number(query, 'rotate', float, 0.0, -360.0, 360.0))
    if params.mix_seed is not None and params.mix_start >= params.mix_end:
        raise BadParameter(f'mix_start={params.mix_start} must be below mix_end={params.mix_end} (layers 0..{num_ws})')
    if not is_stylegan3 and (params.translate != (0.0, 0.0) or params.rotate != 0.0):
        raise BadParameter('tx, ty and rotate need a StyleGAN3 network')
    return params

#----------------------------------------------------------------------------

class Renderer:
    """Renders RenderParams with one generator; one render at a time (a lock), since the SG3 output transform is
    state of the network and requests arrive on several threads."""

    def __init__(self, G, device):
        self.G = G
        self.device = device
        self.lock = threading.Lock()
        transform_holder = getattr(G.synthesis, 'input', None)
        self.is_stylegan3 = hasattr(transform_holder, 'transform')
        self.original_transform = transform_holder.transform.clone() if self.is_stylegan3 else None

    def info(self):
        G = self.G
        return dict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, num_ws=G.num_ws, img_resolution=G.img_resolution,
                    img_channels=G.img_channels, stylegan3=self.is_stylegan3, family=type(G.synthesis).__module__)

    def _ws(self, seed, params):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, self.G.z_dim)).to(self.device, torch.float32)
        c = torch.zeros([1, self.G.c_dim], device=self.device)
        if params.class_idx is not None:
            c[:, params.class_idx] = 1
        return self.G.mapping(z, c, truncation_psi=params.trunc)

    def render(self, params):
        """RenderParams -> image as HWC uint8 numpy."""
        with self.lock, torch.no_grad():
            if self.is_stylegan3:
                if params.translate == (0.0, 0.0) and params.rotate == 0.0:
                    self.G.synthesis.input.transform.copy_(self.original_transform)
                else:
                    gen_images.set_output_transform(self.G, params.translate, params.rotate)
            ws = self._ws(params.seed, params)
            if params.mix_seed is not None:
                ws = style_mixing.mix_styles(ws, self._ws(params.mix_seed, params),
                                             range(params.mix_start, params.mix_end))
            img = self.G.synthesis(ws, noise_mode=params.noise_mode)
        return gen_images.to_uint8_hwc(img)[0]


def encode_png(array_hwc):
    """HWC uint8 -> PNG bytes (grayscale when C == 1)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array_hwc[:, :, 0] if array_hwc.shape[2] == 1 else array_hwc).save(buffer, format='PNG')
    return buffer.getvalue()

#----------------------------------------------------------------------------

class ViewerHandler(http.server.BaseHTTPRequestHandler):
    """GET / (page), /info (JSON), /render (PNG or 400). The server object carries `renderer` and `page`."""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        url = urllib.parse.urlsplit(self.path)
        if url.path in ('/', '/index.html'):
            return self._send(200, 'text/html; charset=utf-8', self.server.page)
        if url.path == '/info':
            return self._send(200, 'application/json', json.dumps(self.server.renderer.info()).encode())
        if url.path == '/render':
            return self._render(urllib.parse.parse_qs(url.query, keep_blank_values=True))
        return self._send(404, 'text/plain; charset=utf-8', f'no page {url.path}\n'.encode())

    def _render(self, query):
        renderer = self.server.renderer
        G = renderer.G
        try:
            params = parse_render_params(query, G.num_ws, G.c_dim, renderer.is_stylegan3)
        except BadParameter as err:
            return self._send(400, 'text/plain; charset=utf-8', f'{err}\n'.encode())
        try:
            png = encode_png(renderer.render(params))
        except (RuntimeError, ValueError) as err:  # E.g. out of memory: the page shows it, the server lives on.
            return self._send(500, 'text/plain; charset=utf-8', f'render failed: {err}\n'.encode())
        self._send(200, 'image/png', png)

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if getattr(self.server, 'verbose', False):
            super().log_message(format, *args)


def make_server(renderer, host='127.0.0.1', port=8888, verbose=False):
    """A ThreadingHTTPServer serving the viewer for renderer (port 0 = any free port: see server.server_address)."""
    server = http.server.ThreadingHTTPServer((host, port), ViewerHandler)
    server.daemon_threads = True
    server.renderer = renderer
    server.verbose = verbose
    with open(PAGE_PATH, 'rb') as f:
        server.page = f.read()
    return server


def is_loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

#----------------------------------------------------------------------------

EXAMPLES = '''\b
Examples:
  # Serve the viewer on this machine, then open http://127.0.0.1:8888/ (or /?seed=42&trunc=0.7) in a browser:
  python viewer.py --network=network-snapshot-000100.pkl
  # On a GPU server, reachable from other machines (no authentication: trusted networks only):
  python viewer.py --network=network-snapshot-000100.pkl --device=cuda --host=0.0.0.0 --port=8080'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', required=True, metavar='PATH|URL')
@click.option('--port', type=click.IntRange(0, 65535), default=8888, show_default=True, help='Port (0 = any free one)',
              metavar='PORT')
@click.option('--host', default='127.0.0.1', show_default=True,
              help='Address to bind; anything but loopback exposes the viewer (no authentication) to the network',
              metavar='ADDRESS')
@click.option('--device', default='auto', show_default=True, help='auto, cpu, cuda, cuda:1, mps', metavar='DEVICE')
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, port, host, device, allow_exec):
    """Serve a page that renders images of a generator on request."""
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = gen_images.load_generator(network_pkl, device, allow_exec=allow_exec)
    if not is_loopback(host):
        click.echo(f'warning: --host={host} makes the viewer reachable from other machines; it has no '
                   'authentication and anyone who reaches it can use this machine\'s compute', err=True)
    try:
        server = make_server(Renderer(G, device), host=host, port=port)
    except OSError as err:
        raise click.ClickException(f'cannot listen on {host}:{port}: {err} (try another --port)')
    bound_host, bound_port = server.server_address[:2]
    click.echo(f'Viewer on http://{bound_host}:{bound_port}/ (Ctrl-C stops it)')
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo('Stopped')
    finally:
        server.server_close()

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
