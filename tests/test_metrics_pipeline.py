"""The whole metric pipeline (generator -> uint8 -> detector -> statistics -> metric) with a tiny TorchScript
detector built here, the real-statistics cache (hit, miss, stale archive), detector lookup and the offline error,
the pickled-detector safety check, report_metric, and multi-process sharding."""

import copy
import json
import os
import pickle
import socket
import urllib.error
import warnings
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from metrics import frechet_inception_distance as fid_lib
from metrics import inception_score as is_lib
from metrics import kernel_inception_distance as kid_lib
from metrics import metric_main
from metrics import metric_utils
from metrics import perceptual_path_length as ppl_lib
from metrics import precision_recall as pr_lib

#----------------------------------------------------------------------------
# A tiny detector with the official call signature, and a tiny generator.

class TinyDetector(torch.nn.Module):
    """Stands in for Inception / VGG16: uint8 or float [N, 3, H, W] in [0, 255] -> features, probabilities or
    normalised LPIPS features, selected by the official keyword arguments."""

    def __init__(self, num_features: int = 12, num_classes: int = 10):
        super().__init__()
        gen = torch.Generator().manual_seed(123)
        self.conv_weight = torch.nn.Parameter(torch.randn([num_features, 3, 3, 3], generator=gen) / 5)
        self.fc_weight = torch.nn.Parameter(torch.randn([num_classes, num_features], generator=gen))
        self.fc_bias = torch.nn.Parameter(torch.randn([num_classes], generator=gen))

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
                resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        if resize_images:
            x = torch.nn.functional.interpolate(x, size=[16, 16], mode='bilinear', align_corners=False)
        features = torch.nn.functional.conv2d(x, self.conv_weight, stride=2).relu().mean(dim=[2, 3])
        if return_features:
            return features
        if return_lpips:
            return features / (features.square().sum(dim=1, keepdim=True).sqrt() + 1e-8)
        logits = features @ self.fc_weight.t()
        if not no_output_bias:
            logits = logits + self.fc_bias
        return torch.softmax(logits, dim=1)


def save_tiny_detector(folder, names=('inception-2015-12-05.pkl', 'vgg16.pkl')):
    """Write the tiny detector as TorchScript archives under the official file names; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.script is deprecated in recent PyTorch, still supported.
        scripted = torch.jit.script(TinyDetector())
        for name in names:
            torch.jit.save(scripted, os.path.join(folder, name))
    return folder


class TinyMapping(torch.nn.Module):
    def __init__(self, z_dim, w_dim, num_ws):
        super().__init__()
        self.num_ws = num_ws
        self.fc = torch.nn.Linear(z_dim, w_dim)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        return self.fc(z).unsqueeze(1).repeat([1, self.num_ws, 1])


class TinySynthesis(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels):
        super().__init__()
        self.shape = [img_channels, img_resolution, img_resolution]
        self.fc = torch.nn.Linear(w_dim, img_channels * img_resolution * img_resolution)

    def forward(self, ws, noise_mode='const', force_fp32=False):
        return torch.tanh(self.fc(ws.mean(dim=1))).reshape([-1] + self.shape) * 1.2


class TinyG(torch.nn.Module):
    """The generator interface metrics use: attributes, G(z, c), G.mapping, G.synthesis."""

    def __init__(self, z_dim=4, c_dim=0, w_dim=6, img_resolution=16, img_channels=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels, self.num_ws = img_resolution, img_channels, 2
        self.mapping = TinyMapping(z_dim, w_dim, self.num_ws)
        self.synthesis = TinySynthesis(w_dim, img_resolution, img_channels)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        return self.synthesis(self.mapping(z, c), **synthesis_kwargs)


def write_dataset_zip(path, num_images, seed, resolution=16):
    """A dataset_tool-style zip of random RGB PNGs; returns the images [N, 3, H, W] uint8 in file order."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=[num_images, resolution, resolution, 3], dtype=np.uint8)
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as archive:
        for index, image in enumerate(images):
            png_path = str(path) + f'.{index}.png'
            PIL.Image.fromarray(image).save(png_path)
            archive.write(png_path, f'00000/img{index:08d}.png')
            os.remove(png_path)
        archive.writestr('dataset.json', json.dumps({'labels': None}))
    return torch.from_numpy(images).permute(0, 3, 1, 2)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Private cache dir, no network, tiny detectors in a detector dir, a 40-image dataset zip."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(dnnlib.util, '_download_once', _offline_download)
    detector_dir = save_tiny_detector(str(tmp_path / 'detectors'))
    data_zip = tmp_path / 'data.zip'
    real_images = write_dataset_zip(data_zip, num_images=40, seed=1)
    dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(data_zip),
                                     resolution=16, use_labels=False, xflip=False)
    opts_kwargs = dict(G=TinyG(), dataset_kwargs=dataset_kwargs, device='cpu', detector_dir=detector_dir)
    return dnnlib.EasyDict(tmp_path=tmp_path, detector_dir=detector_dir, data_zip=data_zip,
                           real_images=real_images, opts_kwargs=opts_kwargs)


def _offline_download(url, timeout):
    raise urllib.error.URLError(socket.gaierror(-3, 'Temporary failure in name resolution'))


def _detector(setup, name='inception-2015-12-05.pkl'):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        return torch.jit.load(os.path.join(setup.detector_dir, name))


def _generated_images(G, num_images, seed=0, batch_gen=4):
    """The images the pipeline generates: z drawn batch_gen at a time from a generator seeded with `seed`."""
    z_gen = torch.Generator().manual_seed(seed)
    batches = [G(torch.randn([batch_gen, G.z_dim], generator=z_gen), torch.zeros([batch_gen, 0]))
               for _ in range((num_images + batch_gen - 1) // batch_gen)]
    return torch.cat(batches)[:num_images]

#----------------------------------------------------------------------------
# End to end, against a direct computation.


def test_fid_pipeline_matches_direct_computation(setup):
    opts = metric_utils.MetricOptions(**setup.opts_kwargs)
    fid = fid_lib.compute_fid(opts, max_real=None, num_gen=64)
    detector = _detector(setup)
    with torch.no_grad():
        real = detector(setup.real_images, return_features=True).double().numpy()
        fake_uint8 = (_generated_images(setup.opts_kwargs['G'], 64) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        fake = detector(fake_uint8, return_features=True).double().numpy()
    expected = fid_lib.frechet_distance(fake.mean(0), np.cov(fake, rowvar=False, bias=True),
                                        real.mean(0), np.cov(real, rowvar=False, bias=True))
    assert fid == pytest.approx(expected, rel=1e-6)
    assert fid > 0
    assert opts.info.num_real == 40 and opts.info.num_fake == 64 and opts.info.mirror is False
    assert opts.info.real_resolution == 16 and opts.info.fake_resolution == 16
    sha = metric_utils.file_sha256(os.path.join(setup.detector_dir, 'inception-2015-12-05.pkl'))
    assert opts.info.detectors == {'inception-2015-12-05.pkl': sha}


def test_kid_is_and_pr_pipelines_match_direct_computation(setup):
    G = setup.opts_kwargs['G']
    with torch.no_grad():
        fake_uint8 = metric_utils.quantize_images(_generated_images(G, 48))
        detector = _detector(setup)
        real = detector(setup.real_images, return_features=True).numpy()
        fake = detector(fake_uint8, return_features=True).numpy()
        probs = detector(fake_uint8, no_output_bias=True).numpy()
    kid = kid_lib.compute_kid(metric_utils.MetricOptions(**setup.opts_kwargs), None, 48, 5, 30)
    assert kid == pytest.approx(kid_lib.kernel_inception_distance(real, fake, 5, 30, seed=0), rel=1e-5)
    score = is_lib.compute_is(metric_utils.MetricOptions(**setup.opts_kwargs), num_gen=48, num_splits=4)
    assert score == pytest.approx(is_lib.inception_score(probs, 4), rel=1e-5)
    precision, recall = pr_lib.compute_pr(metric_utils.MetricOptions(**setup.opts_kwargs), None, 48, 3, 16, 16)
    expected = pr_lib.precision_recall(torch.from_numpy(real), torch.from_numpy(fake), 3)
    assert (precision, recall) == pytest.approx(expected)


def test_ppl_pipeline_uses_lpips_of_an_epsilon_step_in_w(setup):
    opts = metric_utils.MetricOptions(**setup.opts_kwargs)
    ppl = ppl_lib.compute_ppl(opts, num_samples=20, epsilon=1e-2, space='w', sampling='end', crop=False,
                              batch_size=4)
    G, vgg = setup.opts_kwargs['G'], _detector(setup, 'vgg16.pkl')
    z_gen = torch.Generator().manual_seed(0)
    distances = []
    with torch.no_grad():
        for _ in range(5):
            _t = torch.rand([4, 1], generator=z_gen)  # Drawn (and multiplied by 0) for 'end' sampling.
            w0, w1 = G.mapping(torch.randn([8, G.z_dim], generator=z_gen), None).chunk(2)
            images = [(G.synthesis(w0.lerp(w1, t)) + 1) * 127.5 for t in (0.0, 1e-2)]
            f0, f1 = [vgg(img, resize_images=False, return_lpips=True) for img in images]
            distances.append(((f0 - f1) ** 2).sum(1) / 1e-4)
    distances = torch.cat(distances).numpy()
    assert ppl == pytest.approx(ppl_lib.filtered_mean(distances), rel=1e-3)
    assert ppl > 0


class NoisySynthesis(TinySynthesis):
    """TinySynthesis plus a `noise_const` buffer (named as in StyleGAN2) that it adds and records at each call."""

    def __init__(self, w_dim, img_resolution, img_channels):
        super().__init__(w_dim, img_resolution, img_channels)
        self.register_buffer('noise_const', torch.zeros([img_resolution, img_resolution]))
        self.seen_noise = []

    def forward(self, ws, noise_mode='const', force_fp32=False):
        self.seen_noise.append(self.noise_const.clone())
        return super().forward(ws) + self.noise_const * 0.1


def test_ppl_redraws_the_constant_noise_from_a_standard_normal_for_every_batch(setup, monkeypatch):
    G = TinyG()
    G.synthesis = NoisySynthesis(G.w_dim, G.img_resolution, G.img_channels)
    seen = []
    monkeypatch.setattr(metric_utils, 'metric_generator', lambda opts: seen.append(copy.deepcopy(opts.G)) or seen[-1])
    opts = metric_utils.MetricOptions(**dict(setup.opts_kwargs, G=G))
    ppl_lib.compute_ppl(opts, num_samples=8, epsilon=1e-2, space='w', sampling='end', crop=False, batch_size=4)
    first, second = seen[0].synthesis.seen_noise
    assert not torch.equal(first, second)
    for noise in (first, second):  # 256 standard normal values each.
        assert abs(float(noise.mean())) < 0.25 and 0.8 < float(noise.std()) < 1.2
    assert torch.equal(G.synthesis.noise_const, torch.zeros([16, 16]))  # The caller's network is untouched.


def test_calc_metric_result_keys_and_info_for_every_registered_metric(setup, monkeypatch):
    # Shrink the 50k-image metrics to a few images; the registry, result keys and bookkeeping stay as shipped.
    def shrink(module, name, **overrides):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda opts, *args, **kwargs: original(opts, *args, **dict(kwargs,
                                                                                                    **overrides)))
    shrink(fid_lib, 'compute_fid', num_gen=16)
    shrink(kid_lib, 'compute_kid', num_gen=16, num_subsets=2)
    shrink(pr_lib, 'compute_pr', num_gen=16)
    shrink(is_lib, 'compute_is', num_gen=16)
    shrink(ppl_lib, 'compute_ppl', num_samples=8)
    expected_keys = dict(fid50k_full=['fid50k_full'], kid50k_full=['kid50k_full'],
                         pr50k3_full=['pr50k3_full_precision', 'pr50k3_full_recall'], ppl2_wend=['ppl2_wend'],
                         is50k=['is50k_mean', 'is50k_std'], fid50k=['fid50k'], kid50k=['kid50k'],
                         pr50k3=['pr50k3_precision', 'pr50k3_recall'])
    assert set(expected_keys) <= set(metric_main.list_valid_metrics())
    for metric, keys in expected_keys.items():
        result = metric_main.calc_metric(metric, **setup.opts_kwargs)
        assert result.metric == metric and result.num_gpus == 1 and result.total_time >= 0
        assert sorted(result.results) == sorted(keys)
        assert all(np.isfinite(value) for value in result.results.values())
        assert result.info.num_fake in (8, 16)
        assert len(result.info.detectors) == 1
        json.dumps(result)  # The whole result is JSON-serialisable.

def test_generator_only_metrics_need_no_dataset_and_real_ones_say_so(setup):
    opts_kwargs = dict(setup.opts_kwargs, dataset_kwargs={})
    score = is_lib.compute_is(metric_utils.MetricOptions(**opts_kwargs), num_gen=8, num_splits=2)
    assert np.isfinite(score).all()
    with pytest.raises(ValueError, match='--data'):
        fid_lib.compute_fid(metric_utils.MetricOptions(**opts_kwargs), max_real=None, num_gen=8)
    with pytest.raises(ValueError, match='c_dim=3'):
        is_lib.compute_is(metric_utils.MetricOptions(**dict(opts_kwargs, G=TinyG(c_dim=3))), num_gen=8, num_splits=2)

#----------------------------------------------------------------------------
# Real-statistics cache.


def _real_stats(setup, **kwargs):
    opts = metric_utils.MetricOptions(**dict(setup.opts_kwargs, **kwargs))
    stats = metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.INCEPTION_URL,
                                                           dict(return_features=True), capture_mean_cov=True)
    return stats, opts.info.real_stats_cached


def test_real_stats_cache_miss_then_hit(setup):
    first, cached_first = _real_stats(setup)
    second, cached_second = _real_stats(setup)
    assert (cached_first, cached_second) == (False, True)
    np.testing.assert_array_equal(first.get_mean_cov()[0], second.get_mean_cov()[0])
    cache_files = os.listdir(dnnlib.util.make_cache_dir_path('gan-metrics'))
    assert len(cache_files) == 1 and cache_files[0].startswith('data-inception-2015-12-05-')
    assert not _real_stats(setup, cache=False)[1]


def test_real_stats_cache_is_keyed_by_contents_mirror_and_detector(setup, tmp_path):
    _real_stats(setup)
    # Same contents at another path: hit. Mirrored: miss.
    copy_zip = tmp_path / 'copy' / 'data.zip'
    copy_zip.parent.mkdir()
    copy_zip.write_bytes(setup.data_zip.read_bytes())
    assert _real_stats(setup, dataset_kwargs=dict(setup.opts_kwargs['dataset_kwargs'], path=str(copy_zip)))[1]
    assert not _real_stats(setup, dataset_kwargs=dict(setup.opts_kwargs['dataset_kwargs'], xflip=True))[1]
    # Another detector file under the same name: miss.
    other_dir = tmp_path / 'other_detectors'
    other_dir.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.save(torch.jit.script(TinyDetector(num_features=5)), str(other_dir / 'inception-2015-12-05.pkl'))
    stats, cached = _real_stats(setup, detector_dir=str(other_dir))
    assert not cached and stats.num_features == 5


def test_replaced_archive_at_the_same_path_does_not_reuse_stale_stats(setup):
    old_stats, _ = _real_stats(setup)
    write_dataset_zip(setup.data_zip, num_images=40, seed=2)  # Same names, same sizes, new pixels.
    new_stats, cached = _real_stats(setup)
    assert not cached
    assert not np.allclose(old_stats.get_mean_cov()[0], new_stats.get_mean_cov()[0])


def test_folder_fingerprint_changes_when_a_file_changes(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'1234')
    before = metric_utils.dataset_fingerprint(str(tmp_path))
    (tmp_path / 'a.png').write_bytes(b'12345')
    assert metric_utils.dataset_fingerprint(str(tmp_path)) != before
    assert metric_utils.dataset_fingerprint(str(tmp_path / 'missing')) is None

#----------------------------------------------------------------------------
# Finding detectors; the offline message; refusing unsafe pickles.


def test_detector_found_in_cache_detectors_folder(setup):
    cache_detectors = dnnlib.util.make_cache_dir_path('detectors')
    save_tiny_detector(cache_detectors, names=['vgg16.pkl'])
    path = metric_utils.find_detector_file(metric_utils.VGG16_URL)
    assert path == os.path.join(cache_detectors, 'vgg16.pkl')
    metric_main.check_metrics_available(['pr50k3_full', 'ppl2_wend'])


def test_offline_error_names_the_file_the_url_where_to_put_it_and_metrics_none(setup):
    with pytest.raises(metric_utils.DetectorUnavailableError) as info:
        metric_main.check_metrics_available(['fid50k_full', 'is50k', 'pr50k3_full'])
    message = str(info.value)
    assert 'inception-2015-12-05.pkl' in message and 'vgg16.pkl' in message
    assert metric_utils.INCEPTION_URL in message and metric_utils.VGG16_URL in message
    assert os.path.join(dnnlib.util.make_cache_dir_path('detectors'), 'inception-2015-12-05.pkl') in message
    assert 'Temporary failure in name resolution' in message
    assert '--metrics=none' in message and '--detector-dir' in message
    assert 'needed by fid50k_full, is50k' in message and 'needed by pr50k3_full' in message
    with pytest.raises(ValueError, match='unknown metric'):
        metric_main.check_metrics_available(['fid51k'])


def test_pickled_detector_asking_for_other_globals_is_refused_unrun(setup, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ('touch ' + str(tmp_path / 'pwned'),))
    path = tmp_path / 'vgg16.pkl'
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(IOError, match='refusing'):
        metric_utils.load_detector_file(str(path))
    assert not (tmp_path / 'pwned').exists()
    other = tmp_path / 'my-detector.pkl'
    other.write_bytes(pickle.dumps(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='torch.jit.save'):
        metric_utils.load_detector_file(str(other))


def test_trusting_detector_pickles_is_an_explicit_opt_in(tmp_path, monkeypatch):
    path = tmp_path / 'vgg16.pkl'
    path.write_bytes(pickle.dumps(TinyG()))  # Needs a global outside torch: this test module's class.
    with pytest.raises(IOError, match=metric_utils.TRUST_PICKLES_ENV):
        metric_utils.load_detector_file(str(path))
    monkeypatch.setenv(metric_utils.TRUST_PICKLES_ENV, '1')
    assert isinstance(metric_utils.load_detector_file(str(path)), TinyG)


def test_official_name_pickle_of_a_torch_module_loads(tmp_path):
    path = tmp_path / 'inception-2015-12-05.pkl'
    module = torch.nn.Linear(3, 2)
    path.write_bytes(pickle.dumps(module))
    loaded = metric_utils.load_detector_file(str(path))
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded(x), module(x))

#----------------------------------------------------------------------------
# Reporting.


def test_report_metric_appends_one_json_line_per_call(tmp_path):
    result = dnnlib.EasyDict(results=dict(fid50k_full=12.5), metric='fid50k_full', total_time=1.0,
                             total_time_str='1s', num_gpus=1, info=dict(num_real=10, num_fake=20))
    snapshot = tmp_path / 'network-snapshot-000004.pkl'
    for _ in range(2):
        line = metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(snapshot))
    lines = (tmp_path / 'metric-fid50k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2 and lines[1] == line
    record = json.loads(lines[0])
    assert record['results'] == {'fid50k_full': 12.5} and record['snapshot_pkl'] == 'network-snapshot-000004.pkl'
    assert record['info'] == {'num_real': 10, 'num_fake': 20} and 'timestamp' in record

#----------------------------------------------------------------------------
# Two processes (gloo): sharded extraction gives the same statistics as one process.


def _sharded_worker(rank, init_file, opts_kwargs, out_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        opts = metric_utils.MetricOptions(**dict(opts_kwargs, num_gpus=2, rank=rank, cache=False))
        stats = metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.INCEPTION_URL,
                                                               dict(return_features=True), capture_all=True)
        np.save(os.path.join(out_dir, f'rank{rank}.npy'), stats.get_all())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_sharding_matches_one_process(setup):
    out_dir = str(setup.tmp_path)
    torch.multiprocessing.spawn(_sharded_worker, args=(str(setup.tmp_path / 'init'), setup.opts_kwargs, out_dir),
                                nprocs=2)
    single = metric_utils.compute_feature_stats_for_dataset(
        metric_utils.MetricOptions(**dict(setup.opts_kwargs, cache=False)), metric_utils.INCEPTION_URL,
        dict(return_features=True), capture_all=True).get_all()
    for rank in range(2):
        np.testing.assert_allclose(np.load(os.path.join(out_dir, f'rank{rank}.npy')), single, rtol=1e-6)

#----------------------------------------------------------------------------
# Equivariance metrics: the protocol metrics/equivariance.py implements.


def test_equivariance_wrappers_call_the_module_protocol(monkeypatch):
    import sys
    import types
    calls = []

    def compute_equivariance_metrics(opts, num_samples, batch_size, translate_max=0.125, rotate_max=1,
                                     compute_eqt_int=False, compute_eqt_frac=False, compute_eqr=False):
        calls.append((num_samples, batch_size, compute_eqt_int, compute_eqt_frac, compute_eqr))
        return 42.0
    fake = types.ModuleType('metrics.equivariance')
    fake.compute_equivariance_metrics = compute_equivariance_metrics
    monkeypatch.setitem(sys.modules, 'metrics.equivariance', fake)
    opts = metric_utils.MetricOptions(G=TinyG(), device='cpu')
    assert metric_main.eqt50k_int(opts) == dict(eqt50k_int=42.0)
    assert metric_main.eqt50k_frac(opts) == dict(eqt50k_frac=42.0)
    assert metric_main.eqr50k(opts) == dict(eqr50k=42.0)
    assert calls == [(50000, 4, True, False, False), (50000, 4, False, True, False), (50000, 4, False, False, True)]
    assert metric_main.metric_detector_urls('fid50k_full') == (metric_utils.INCEPTION_URL,)
