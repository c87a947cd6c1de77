"""viewer.py: an HTTP server on 127.0.0.1 (ephemeral port) that renders PNGs equal to direct generator calls, answers
bad parameters with 400, renders one request at a time; and a real headless Chromium that loads the page, moves the
seed slider with the keyboard and sees the image change."""

import concurrent.futures
import io
import json
import tempfile
import threading
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch

import gen_images
import viewer
from training import networks_stylegan2, networks_stylegan3

from chromium_pipe import ChromiumPipe, find_chromium

SMALL = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2))


def _sg3(c_dim=3):
    torch.manual_seed(0)
    return networks_stylegan3.Generator(c_dim=c_dim, channel_base=256, channel_max=16, num_layers=4,
                                        **SMALL).eval().requires_grad_(False)


@pytest.fixture(scope='module')
def server():
    """A running viewer for a conditional StyleGAN3 generator; yields (base_url, G)."""
    G = _sg3()
    srv = viewer.make_server(viewer.Renderer(G, torch.device('cpu')), host='127.0.0.1', port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{srv.server_address[1]}', G
    srv.shutdown()
    srv.server_close()


def _get(url):
    """(status, content type, body) of a GET, including error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers['Content-Type'], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers['Content-Type'], err.read()


def _png(body):
    return np.asarray(PIL.Image.open(io.BytesIO(body))).astype(int)


def _ws(G, seed, class_idx, psi=1.0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros([1, G.c_dim])
    c[:, class_idx] = 1
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=psi)


def _image(G, ws):
    with torch.no_grad():
        return gen_images.to_uint8_hwc(G.synthesis(ws, noise_mode='const'))[0].astype(int)

#----------------------------------------------------------------------------

def test_render_is_the_png_of_the_generator(server):
    base, G = server
    status, content_type, body = _get(f'{base}/render?seed=5&class=1&trunc=0.7')
    assert status == 200 and content_type == 'image/png'
    assert np.abs(_png(body) - _image(G, _ws(G, 5, 1, psi=0.7))).max() <= 1


def test_style_mixing_takes_the_layer_range_from_the_mix_seed(server):
    base, G = server
    status, _, body = _get(f'{base}/render?seed=5&class=0&mix_seed=9&mix_start=2&mix_end=6')
    assert status == 200
    ws, ws_mix = _ws(G, 5, 0), _ws(G, 9, 0)
    mixed = ws.clone()
    mixed[:, 2:6] = ws_mix[:, 2:6]
    assert np.abs(_png(body) - _image(G, mixed)).max() <= 1
    assert np.abs(_png(body) - _image(G, ws)).max() > 1  # Mixing changed the image.


def test_translate_and_rotate_then_back_to_the_original(server):
    base, G = server
    plain = _png(_get(f'{base}/render?seed=2&class=2')[2])
    moved = _png(_get(f'{base}/render?seed=2&class=2&tx=0.25&rotate=30')[2])
    again = _png(_get(f'{base}/render?seed=2&class=2')[2])
    assert np.array_equal(plain, again)  # The transform does not stick to the network.
    assert np.abs(moved - plain).mean() > 0.3 * plain.std()


def test_concurrent_requests_each_get_their_own_image(server):
    # The transform is network state; without the render lock, requests on other threads would see each other's.
    base, _ = server
    queries = [f'seed=3&class=0&rotate={angle}' for angle in (0, 40, 80, 120, 160, 200)]
    expected = [_png(_get(f'{base}/render?{q}')[2]) for q in queries]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda q: _png(_get(f'{base}/render?{q}')[2]), queries * 2))
    for idx, image in enumerate(results):
        assert np.array_equal(image, expected[idx % len(queries)])


@pytest.mark.parametrize('query, message', [
    ('seed=abc&class=0', "seed='abc' is not an integer"),
    ('seed=-1&class=0', 'seed=-1 is outside'),
    ('seed=1', 'class=0..2 is required'),
    ('seed=1&class=3', 'class=3 is outside'),
    ('seed=1&class=0&trunc=nan', 'trunc=nan is outside'),
    ('seed=1&class=0&noise=loud', "noise='loud' must be const, random or none"),
    ('seed=1&class=0&mix_seed=2&mix_start=5&mix_end=5', 'mix_start=5 must be below mix_end=5'),
    ('seed=1&class=0&mix_end=99', 'mix_end=99 is outside'),
    ('seed=1&class=0&color=red', "unknown parameter 'color'"),
])
def test_bad_parameters_get_400_with_a_message(server, query, message):
    base, _ = server
    status, content_type, body = _get(f'{base}/render?{query}')
    assert status == 400 and content_type.startswith('text/plain')
    assert message in body.decode()


def test_translate_on_stylegan2_is_a_400():
    with pytest.raises(viewer.BadParameter, match='need a StyleGAN3 network'):
        viewer.parse_render_params({'tx': ['0.1']}, num_ws=8, c_dim=0, is_stylegan3=False)
    assert viewer.parse_render_params({}, num_ws=8, c_dim=0, is_stylegan3=False).mix_end == 8


def test_page_and_info(server):
    base, G = server
    status, content_type, body = _get(f'{base}/')
    assert status == 200 and content_type.startswith('text/html') and b'id="seed"' in body
    info = json.loads(_get(f'{base}/info')[2])
    assert info['num_ws'] == G.num_ws and info['c_dim'] == 3 and info['stylegan3'] is True
    assert _get(f'{base}/nothing')[0] == 404


def test_only_loopback_is_private():
    assert viewer.is_loopback('127.0.0.1') and viewer.is_loopback('localhost') and viewer.is_loopback('::1')
    assert not viewer.is_loopback('0.0.0.0') and not viewer.is_loopback('192.168.1.5')

#----------------------------------------------------------------------------
# The real browser.

@pytest.fixture(scope='module')
def sg2_server():
    torch.manual_seed(1)
    G = networks_stylegan2.Generator(c_dim=0, channel_base=128, channel_max=16, **SMALL).eval().requires_grad_(False)
    srv = viewer.make_server(viewer.Renderer(G, torch.device('cpu')), host='127.0.0.1', port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}', G
    srv.shutdown()
    srv.server_close()


PIXELS_JS = """(() => { const img = document.getElementById('image'); const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0); return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data); })()"""


def test_browser_moves_the_seed_slider_and_the_image_changes(sg2_server, tmp_path):
    binary = find_chromium()
    if binary is None:
        print('skipping the browser test: no Chromium (apt-get install chromium)')
        pytest.skip('no system Chromium (/usr/bin/chromium; Debian package chromium)')
    base, G = sg2_server
    with tempfile.TemporaryDirectory() as profile, ChromiumPipe(binary, profile) as browser:
        browser.open(f'{base}/?seed=3')
        browser.wait_for('window.viewerState && window.viewerState.renders >= 1')
        assert 'seed=3' in browser.evaluate('window.viewerState.lastQuery')
        before = np.array(browser.evaluate(PIXELS_JS)).reshape(16, 16, 4)[:, :, :3]
        z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
        with torch.no_grad():
            expected = gen_images.to_uint8_hwc(G(z, None, noise_mode='const'))[0].astype(int)
        assert np.abs(before - expected).max() <= 2  # The browser shows the server's image of seed 3.

        browser.evaluate("document.getElementById('seed').focus()")
        browser.press_key('ArrowRight', 'ArrowRight', 39)  # The slider moves one step: seed 4.
        browser.wait_for("window.viewerState.renders >= 2 && window.viewerState.lastQuery.includes('seed=4')")
        assert browser.evaluate("document.getElementById('seed_num').value") == '4'
        after = np.array(browser.evaluate(PIXELS_JS)).reshape(16, 16, 4)[:, :, :3]
        assert np.abs(after - before).mean() > 2
        screenshot = browser.screenshot()
    assert screenshot[:8] == b'\x89PNG\r\n\x1a\n'
    (tmp_path / 'viewer.png').write_bytes(screenshot)
