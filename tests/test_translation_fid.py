"""fid_AtoB / fid_BtoA (metrics/translation_fid.py) for CycleGAN snapshots: the number against an independent
computation with the tiny detector, calc_metrics.py end to end, and the errors a user sees."""

import contextlib
import io
import json
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
from metrics import metric_main
from metrics.translation_fid import Translators
from tests.test_metrics_pipeline import _offline_download, save_tiny_detector
from torch_utils import safe_pickle
from training import networks_cyclegan

#----------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A 24 + 24 image unpaired zip (built-in pair), a CycleGAN snapshot of two different tiny generators, the
    tiny detector, and an offline cache."""
    import dataset_tool_unpaired
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(dnnlib.util, '_download_once', _offline_download)
    data = tmp_path / 'pair.zip'
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        dataset_tool_unpaired.convert_unpaired('builtin:shapes2colors', None, str(data), 24, None, None, 'error')
    nets = {}
    for seed, name in enumerate(['G_AB', 'G_BA', 'D_A', 'D_B']):
        torch.manual_seed(seed)
        cls = networks_cyclegan.ResnetGenerator if name[0] == 'G' else networks_cyclegan.PatchDiscriminator
        width = dict(ngf=4, num_blocks=1) if name[0] == 'G' else dict(ndf=4)
        nets[name] = cls(img_channels=3, img_resolution=32, **width).eval()
    snapshot = tmp_path / 'network-snapshot-000004.pkl'
    safe_pickle.save_network_pkl(nets, str(snapshot))
    detector_dir = save_tiny_detector(str(tmp_path / 'detectors'))
    return dnnlib.EasyDict(data=data, nets=nets, snapshot=snapshot, detector_dir=detector_dir)


def _domain_images(data, folder):
    """uint8 [N, 3, H, W] of one domain, read straight from the zip (not through the dataset class)."""
    with zipfile.ZipFile(data) as archive:
        names = sorted(name for name in archive.namelist() if name.startswith(folder + '/') and name.endswith('.png'))
        arrays = [np.array(PIL.Image.open(archive.open(name)).convert('RGB')) for name in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _reference_fid(features_1, features_2):
    """FID by its definition with scipy's matrix square root (covariances normalised by N)."""
    features_1, features_2 = features_1.double().numpy(), features_2.double().numpy()
    mu_1, mu_2 = features_1.mean(0), features_2.mean(0)
    sigma_1, sigma_2 = np.cov(features_1, rowvar=False, bias=True), np.cov(features_2, rowvar=False, bias=True)
    trace_sqrt = np.trace(scipy.linalg.sqrtm(sigma_1 @ sigma_2).real)
    return float(np.square(mu_1 - mu_2).sum() + np.trace(sigma_1) + np.trace(sigma_2) - 2 * trace_sqrt)


@pytest.mark.filterwarnings('ignore::FutureWarning')  # torch.jit.load of the tiny detector.
@pytest.mark.filterwarnings('ignore::scipy.linalg.LinAlgWarning')  # A dead ReLU feature: sqrtm still exact here.
@pytest.mark.parametrize('direction', ['AtoB', 'BtoA'])
def test_translation_fid_equals_the_definition(setup, direction):
    translators = Translators(setup.nets['G_AB'], setup.nets['G_BA'])
    result = metric_main.calc_metric(f'fid_{direction}', G=translators, dataset_kwargs=dict(path=str(setup.data)),
                                     device='cpu', detector_dir=setup.detector_dir)
    detector = torch.jit.load(f'{setup.detector_dir}/inception-2015-12-05.pkl')
    source, target = ('A', 'B') if direction == 'AtoB' else ('B', 'A')
    G = setup.nets['G_AB' if direction == 'AtoB' else 'G_BA']
    with torch.no_grad():
        translated = G(_domain_images(setup.data, source).float() / 127.5 - 1)
        fake_features = detector((translated * 127.5 + 128).clamp(0, 255).to(torch.uint8), return_features=True)
        real_features = detector(_domain_images(setup.data, target), return_features=True)
    expected = _reference_fid(fake_features, real_features)
    assert result.results[f'fid_{direction}'] == pytest.approx(expected, rel=1e-4)
    assert result.info.num_fake == result.info.num_real == 24
    assert (result.info.source_domain, result.info.target_domain) == (source, target)


def test_calc_metrics_cli_measures_a_cyclegan_snapshot(setup):
    result = CliRunner().invoke(calc_metrics.calc_metrics, [
        f'--network={setup.snapshot}', '--metrics=fid_AtoB,fid_BtoA', f'--data={setup.data}', '--device=cpu',
        f'--detector-dir={setup.detector_dir}'])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line[line.index('{"results"'):]) for line in result.output.splitlines() if '{"results"' in line]
    assert [line['metric'] for line in lines] == ['fid_AtoB', 'fid_BtoA']
    values = [line['results'][line['metric']] for line in lines]
    assert all(value > 0 for value in values) and values[0] != values[1]


@pytest.mark.parametrize('args, message', [
    (['--metrics=fid_AtoB,fid50k_full', '--data=DATA'], 'fid_AtoB measure CycleGAN snapshots and fid50k_full'),
    (['--metrics=fid_AtoB'], '--data: the translation metrics need the unpaired dataset'),
    (['--metrics=fid50k_full', '--data=DATA'], 'it is a CycleGAN snapshot: measure it with --metrics=fid_AtoB'),
])
def test_calc_metrics_cyclegan_errors_are_one_line(setup, args, message):
    args = [arg.replace('DATA', str(setup.data)) for arg in args]
    result = CliRunner().invoke(calc_metrics.calc_metrics, [f'--network={setup.snapshot}', '--device=cpu',
                                                            f'--detector-dir={setup.detector_dir}'] + args)
    assert result.exit_code != 0
    assert message in result.output, result.output


def test_translation_metric_of_a_stylegan_pickle_names_the_problem(setup, tmp_path):
    stylegan = tmp_path / 'sg.pkl'
    with open(stylegan, 'wb') as file:
        pickle.dump(dict(G=None, D=None, G_ema=None), file)
    result = CliRunner().invoke(calc_metrics.calc_metrics, [f'--network={stylegan}', '--metrics=fid_AtoB',
                                                            f'--data={setup.data}', '--device=cpu',
                                                            f'--detector-dir={setup.detector_dir}'])
    assert result.exit_code != 0 and 'is not a CycleGAN snapshot' in result.output, result.output

#----------------------------------------------------------------------------
# During CycleGAN training (train.py --cfg=cyclegan --metrics=fid_AtoB,fid_BtoA).


def test_cyclegan_run_measures_each_snapshot(setup, tmp_path):
    import train_cyclegan
    from metrics import translation_fid
    assert train_cyclegan.TRANSLATION_METRICS == translation_fid.TRANSLATION_METRICS  # --help imports no torch.
    outdir = tmp_path / 'runs'
    result = CliRunner().invoke(train_cyclegan.cli, [
        f'--outdir={outdir}', f'--data={setup.data}', '--batch=2', '--ngf=4', '--ndf=4', '--blocks=1',
        '--kimg=0.008', '--tick=0.004', '--snap=1', '--workers=0', '--device=cpu', '--threads=1',
        '--metrics=fid_AtoB,fid_BtoA', f'--detector-dir={setup.detector_dir}'])
    assert result.exit_code == 0, result.output
    [run_dir] = outdir.iterdir()
    for metric in ('fid_AtoB', 'fid_BtoA'):
        records = [json.loads(line) for line in (run_dir / f'metric-{metric}.jsonl').read_text().splitlines()]
        # One record per snapshot (three ticks, all named 000000 at this kimg scale).
        assert [record['snapshot_pkl'] for record in records] == ['network-snapshot-000000.pkl'] * 3
        assert all(record['results'][metric] > 0 and record['info']['num_fake'] == 24 for record in records)
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert options['metrics'] == ['fid_AtoB', 'fid_BtoA']


@pytest.mark.parametrize('args, message', [
    (['--metrics=fid50k_full'], '--metrics=fid50k_full: a CycleGAN run measures fid_AtoB, fid_BtoA'),
    (['--metrics=fid_AtoB', '--detector-dir=EMPTY'], 'inception-2015-12-05.pkl'),
])
def test_cyclegan_run_metric_errors_at_start(setup, tmp_path, args, message):
    import train_cyclegan
    (tmp_path / 'empty').mkdir()
    args = [arg.replace('EMPTY', str(tmp_path / 'empty')) for arg in args]
    result = CliRunner().invoke(train_cyclegan.cli, [f'--outdir={tmp_path / "runs"}', f'--data={setup.data}',
                                                     '--device=cpu'] + args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / 'runs').exists()
