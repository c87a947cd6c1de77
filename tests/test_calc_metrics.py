"""calc_metrics.py end to end on CPU: a tiny StyleGAN2 snapshot in a run directory, the tiny TorchScript detector,
data taken from the pickle or --data, results in metric-<name>.jsonl; detector and name errors at start."""

import json
import os

import pytest
from click.testing import CliRunner

import calc_metrics
import dnnlib
from metrics import frechet_inception_distance as fid_lib
from metrics import metric_utils
from tests.test_metrics_pipeline import _offline_download, save_tiny_detector, write_dataset_zip

nets2 = pytest.importorskip('training.networks_stylegan2', reason='needs the StyleGAN2 networks')
safe_pickle = pytest.importorskip('torch_utils.safe_pickle', reason='needs the safe pickle writer/loader')

TINY_G = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
              mapping_kwargs=dict(num_layers=2))


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run dir with training_options.json and a snapshot whose training_set_kwargs point at a 24-image zip."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(dnnlib.util, '_download_once', _offline_download)
    original = fid_lib.compute_fid  # 50k generated images are too many for a test: 16 here.
    monkeypatch.setattr(fid_lib, 'compute_fid', lambda opts, max_real, num_gen: original(opts, max_real, 16))
    data_zip = tmp_path / 'data.zip'
    write_dataset_zip(data_zip, num_images=24, seed=3)
    run_dir = tmp_path / '00000-stylegan2-data-gpus1-batch4-gamma1'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text('{}')
    training_set_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=str(data_zip),
                               resolution=16, use_labels=False, max_size=24, xflip=False, random_seed=0)
    G = nets2.Generator(**TINY_G).eval().requires_grad_(False)
    snapshot = run_dir / 'network-snapshot-000004.pkl'
    safe_pickle.save_network_pkl(dict(G=G, D=None, G_ema=G, augment_pipe=None,
                                      training_set_kwargs=training_set_kwargs), str(snapshot))
    detector_dir = save_tiny_detector(str(tmp_path / 'detectors'))
    return dnnlib.EasyDict(tmp_path=tmp_path, run_dir=run_dir, snapshot=snapshot, data_zip=data_zip,
                           detector_dir=detector_dir)


def _invoke(*args):
    return CliRunner().invoke(calc_metrics.calc_metrics, list(args), catch_exceptions=False)


def test_calc_metrics_appends_to_the_run_dir_with_data_from_the_pickle(run):
    result = _invoke(f'--network={run.snapshot}', '--metrics=fid50k_full', '--device=cpu',
                     f'--detector-dir={run.detector_dir}')
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run.run_dir / 'metric-fid50k_full.jsonl').read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record['metric'] == 'fid50k_full' and record['results']['fid50k_full'] > 0
    assert record['snapshot_pkl'] == 'network-snapshot-000004.pkl'
    sha = metric_utils.file_sha256(os.path.join(run.detector_dir, 'inception-2015-12-05.pkl'))
    assert record['info']['num_real'] == 24 and record['info']['num_fake'] == 16  # max_size dropped: full set.
    assert record['info']['mirror'] is False and record['info']['fake_resolution'] == 16
    assert record['info']['detectors'] == {'inception-2015-12-05.pkl': sha}
    assert '"fid50k_full"' in result.output and 'network-snapshot-000004.pkl' in result.output  # Printed too.


def test_calc_metrics_data_and_mirror_options_override_the_pickle(run, tmp_path):
    other_zip = tmp_path / 'other.zip'
    write_dataset_zip(other_zip, num_images=10, seed=4)
    result = _invoke(f'--network={run.snapshot}', '--metrics=fid50k', f'--data={other_zip}', '--mirror=1',
                     '--device=cpu', f'--detector-dir={run.detector_dir}')
    assert result.exit_code == 0, result.output
    record = json.loads((run.run_dir / 'metric-fid50k.jsonl').read_text())
    assert record['info']['num_real'] == 20 and record['info']['mirror'] is True  # 10 images, x-flipped.


def test_calc_metrics_stops_at_start_when_a_detector_is_missing(run):
    result = _invoke('--network=/nonexistent/network.pkl', '--metrics=fid50k_full,pr50k3_full', '--device=cpu')
    assert result.exit_code != 0
    assert 'inception-2015-12-05.pkl' in result.output and 'vgg16.pkl' in result.output
    assert metric_utils.INCEPTION_URL in result.output and '--detector-dir' in result.output
    assert 'nonexistent' not in result.output  # Stopped before touching the network pickle.


def test_calc_metrics_none_is_accepted_and_does_nothing(run):
    result = _invoke('--network=/nonexistent/network.pkl', '--metrics=none', '--device=cpu')
    assert result.exit_code == 0, result.output
    assert 'no metrics requested' in result.output
    assert list(run.run_dir.glob('metric-*.jsonl')) == []


def test_calc_metrics_rejects_unknown_metric_names(run):
    result = _invoke(f'--network={run.snapshot}', '--metrics=fid51k', '--device=cpu')
    assert result.exit_code == 2
    assert 'fid51k' in result.output and 'fid50k_full' in result.output
