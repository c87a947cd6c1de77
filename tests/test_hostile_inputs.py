"""Hostile pickles (issue 14, holes 1-5) through every entry point, each in its own process.

For every case: nothing from the file runs (the marker file a payload would create stays absent), no file appears
outside the output folder, no crash signal (returncode >= 0), a refusal exit code with a one-line message naming
the file, within a time bound and under a 4 GiB address-space limit (RLIMIT_AS in the child).

The loader's verdict on every payload is checked in-process first (fast). The process matrix: a fast subset (one
case per hole, plus the viewer) and the full matrix (marked slow): the representative case of each hole through
gen_images, gen_video, calc_metrics, train --resume and legacy.py; a few of them (LATE_ENTRY_CASES) through the
other tools that load a network (viewer, onnx_export, style_mixing, projector: all through gen_images.load_generator);
every other network case through legacy.py; every detector case through calc_metrics --detector-dir; every
steering case through calc_metrics without --data.
"""

import os
import resource
import subprocess
import sys
import time

import PIL.Image
import pytest
import torch

import calc_metrics
from metrics import metric_utils
from tests import hostile_payloads as hp
from tests.test_metrics_pipeline import save_tiny_detector, write_dataset_zip
from torch_utils.safe_pickle import CorruptPickleError, UnsafePickleError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_LIMIT = 4 << 30      # RLIMIT_AS of each child process.
TIME_LIMIT_S = 240          # Generous: CI machines are shared; a hang or a huge allocation takes far longer.
REPRESENTATIVES = ['exec-dotted-torch-os.system', 'dtype-void-field-out-of-range', 'state-compiled-call-impl',
                   'resource-dag-submodules', 'resource-z-dim-1e12']
ENTRY_POINTS = ['gen_images', 'gen_video', 'calc_metrics', 'train', 'legacy']
# Tools that load a network through gen_images.load_generator too: a few representative cases each.
LATE_ENTRY_POINTS = ['viewer', 'onnx_export', 'style_mixing', 'projector']
LATE_ENTRY_CASES = ['exec-dotted-torch-os.system', 'dtype-void-field-out-of-range', 'state-compiled-call-impl']
# A refused file is a bad input, not a usage error: exit code 1 everywhere (2 is click's code for bad usage).
REFUSAL_CODES = {entry: {1} for entry in ENTRY_POINTS + LATE_ENTRY_POINTS}
MESSAGE_WORDS = ('refused', 'refusing', 'not a size', 'shared with another', 'nesting deeper', 'allocate more',
                 'objects counting', 'cannot load', 'not an existing dataset', 'not one of')

#----------------------------------------------------------------------------
# In-process verdicts (fast).

NETWORK_CASES = sorted(hp.network_payloads('MARKER'))
DETECTOR_CASES = sorted(hp.detector_payloads('MARKER'))


@pytest.mark.parametrize('case', NETWORK_CASES)
def test_the_loader_refuses_every_network_payload(case, tmp_path):
    import legacy
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'network.pkl'
    path.write_bytes(hp.network_payloads(str(marker))[case])
    with pytest.raises((UnsafePickleError, CorruptPickleError)) as info:
        legacy.load_network_pkl(str(path))
    assert str(path) in str(info.value) and len(str(info.value)) < 600
    assert not marker.exists()


@pytest.mark.parametrize('case', DETECTOR_CASES)
def test_the_detector_loader_refuses_every_detector_payload(case, tmp_path):
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'inception-2015-12-05.pkl'
    path.write_bytes(hp.detector_payloads(str(marker))[case])
    with pytest.raises(OSError, match='refusing|cannot load'):
        metric_utils.load_detector_file(str(path))
    assert not marker.exists()


def test_steering_values_from_a_pickle_are_refused_or_made_harmless(tmp_path, monkeypatch):
    import click
    monkeypatch.chdir(tmp_path)
    data_zip = tmp_path / 'data.zip'
    write_dataset_zip(data_zip, num_images=2, seed=0)
    recorded = dict(class_name='training.dataset.ImageFolderDataset', path=str(data_zip), xflip=1,
                    name='../../etc/cron.d/x', max_size=3, unknown=[1])
    kwargs = calc_metrics.dataset_kwargs_from_snapshot(recorded)
    assert kwargs == dict(class_name='training.dataset.ImageFolderDataset', path=str(data_zip), xflip=True,
                          name='_.._etc_cron.d_x')
    for bad in [dict(recorded, class_name='this.s'), dict(recorded, path='/'), dict(recorded, path='missing.zip'),
                dict(recorded, path=str(tmp_path)), dict(recorded, path=None), ['not', 'a', 'dict']]:
        with pytest.raises(click.ClickException, match='--data'):
            calc_metrics.dataset_kwargs_from_snapshot(bad)
    assert 'this' not in sys.modules
    assert calc_metrics.safe_dataset_name('...') is None and calc_metrics.safe_dataset_name('ffhq-1024') == 'ffhq-1024'

def test_rebuilding_from_init_kwargs_that_do_not_match_the_weights_is_refused_before_allocating(tmp_path):
    import legacy

    def huge_channels(class_name, state):
        if class_name == 'Generator':
            state['_init_kwargs'] = dict(state['_init_kwargs'], channel_base=1 << 17, channel_max=1 << 17)
        return state
    path = tmp_path / 'network.pkl'
    path.write_bytes(hp._edited_snapshot(huge_channels))
    assert legacy.load_network_pkl(str(path))['G_ema'] is not None  # Loading alone builds nothing.
    with pytest.raises(CorruptPickleError, match='allocate more than'):
        legacy.load_network_pkl(str(path), force_fp16=True)  # ~10^11 elements if it were built.


def test_allocation_budget_counts_factory_calls_before_they_allocate():
    from torch_utils.pickle_checks import AllocationBudget
    with AllocationBudget(1000, 'test') as budget:
        torch.zeros(10, 20)
        torch.nn.Linear(20, 30)  # 600 + 30 elements through torch.empty.
        assert budget.used == 200 + 630
        with pytest.raises(CorruptPickleError, match='allocate more than 1000'):
            torch.randn([1 << 40])
    assert torch.zeros(2000).numel() == 2000  # Outside the block: no budget.


def test_allow_lists_match_whole_names_only():
    from torch_utils import safe_pickle
    from torch_utils.pickle_checks import AllowList
    assert safe_pickle.ALLOWED_GLOBALS.resolve('dnnlib.util', 'EasyDict') is not None
    for module, name in [('dnnlib.util', 'EasyDict.__init__'), ('torch', 'os.system'), ('dnnlib', 'util.EasyDict'),
                         ('builtins', 'eval'), ('torch._utils', '_rebuild_tensor_v2.__globals__')]:
        assert safe_pickle.ALLOWED_GLOBALS.resolve(module, name) is None
        assert safe_pickle.CIFAR_GLOBALS.resolve(module, name) is None
        assert metric_utils._detector_allow_list()[0].resolve(module, name) is None
    with pytest.raises(ValueError, match='plain name'):
        AllowList({('torch', 'nn.Linear'): torch.nn.Linear})

#----------------------------------------------------------------------------
# Process runs.

def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _tree(root, skip):
    """Relative paths of all files and folders under `root`, except under the folders in `skip`."""
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
        found.update(os.path.relpath(os.path.join(folder, name), root) for name in dirs + files)
    return found


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    """A 16x16 dataset zip, tiny TorchScript detectors and a valid tiny snapshot, shared by all runs."""
    root = tmp_path_factory.mktemp('hostile-shared')
    write_dataset_zip(root / 'data.zip', num_images=8, seed=0)
    save_tiny_detector(str(root / 'detectors'))
    (root / 'valid.pkl').write_bytes(hp.tiny_snapshot_bytes())
    PIL.Image.new('RGB', (16, 16), (200, 30, 30)).save(root / 'target.png')  # projector --target.
    return root


def _command(entry, network, out, shared, detector_dir=None, data=True):
    python = sys.executable
    if entry == 'gen_images':
        return [python, 'gen_images.py', f'--network={network}', '--seeds=0', f'--outdir={out}', '--device=cpu']
    if entry == 'gen_video':
        return [python, 'gen_video.py', f'--network={network}', '--seeds=0-1', '--grid=1x1', '--num-keyframes=2',
                f'--output={out}/video.mp4', '--device=cpu']
    if entry == 'calc_metrics':
        return [python, 'calc_metrics.py', f'--network={network}', '--metrics=fid50k_full', '--device=cpu',
                f'--detector-dir={detector_dir or shared / "detectors"}'] + \
            ([f'--data={shared / "data.zip"}'] if data else [])
    if entry == 'train':
        return [python, 'train.py', f'--outdir={out}', '--cfg=stylegan2', f'--data={shared / "data.zip"}', '--gpus=1',
                '--batch=4', '--gamma=1', '--kimg=1', '--metrics=none', '--cbase=256', '--cmax=16', '--workers=0',
                '--device=cpu', f'--resume={network}']
    if entry == 'viewer':  # Loads the network before it binds: a refusal exits 1 without serving.
        return [python, 'viewer.py', f'--network={network}', '--port=0', '--device=cpu']
    if entry == 'onnx_export':  # TorchScript: the refusal must not depend on onnx being installed.
        return [python, 'onnx_export.py', f'--network={network}', f'--output={out}/g.pt', '--format=torchscript',
                '--device=cpu']
    if entry == 'style_mixing':
        return [python, 'style_mixing.py', f'--network={network}', '--rows=0', '--cols=1', f'--outdir={out}',
                '--device=cpu']
    if entry == 'projector':
        return [python, 'projector.py', f'--network={network}', f'--target={shared / "target.png"}',
                '--num-steps=1', '--distance=pixel', '--save-video=0', f'--outdir={out}', '--device=cpu']
    assert entry == 'legacy'
    return [python, 'legacy.py', f'--source={network}', f'--dest={out}/converted.pkl']


def _run_case(entry, blob, tmp_path, shared, file_name='network.pkl', as_detector=False, data=True):
    """Run `entry` on the payload `blob` in a child process; check everything but the message; return output."""
    out, work = tmp_path / 'out', tmp_path / 'work'
    for folder in [out, work, tmp_path / 'cache', tmp_path / 'home', tmp_path / 'tmp', tmp_path / 'outside']:
        folder.mkdir()
    payload = (work / file_name)
    payload.write_bytes(blob)
    network = shared / 'valid.pkl' if as_detector else payload
    command = _command(entry, network, out, shared, detector_dir=work if as_detector else None, data=data)
    env = dict(PATH=os.environ.get('PATH', '/usr/bin:/bin'), OMP_NUM_THREADS='1', HOME=str(tmp_path / 'home'),
               TMPDIR=str(tmp_path / 'tmp'), DNNLIB_CACHE_DIR=str(tmp_path / 'cache'), PYTHONDONTWRITEBYTECODE='1')
    before = _tree(tmp_path, skip={str(out)})
    started = time.time()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIME_LIMIT_S,
                            preexec_fn=_limit_memory)
    elapsed = time.time() - started
    output = result.stdout + result.stderr
    assert result.returncode >= 0, f'{entry} died by signal {-result.returncode}:\n{output[-2000:]}'
    assert result.returncode in REFUSAL_CODES[entry], f'{entry} exit code {result.returncode}:\n{output[-2000:]}'
    assert not (tmp_path / 'MARKER').exists(), f'{entry}: the payload ran'
    assert _tree(tmp_path, skip={str(out)}) - before <= {'cache/gan-metrics', 'cache/downloads'}, \
        f'{entry} wrote outside the output folder: {_tree(tmp_path, skip={str(out)}) - before}'
    assert 'Beautiful is better than ugly' not in output  # `import this` (a steering payload) never happened.
    assert elapsed < TIME_LIMIT_S
    assert 'Traceback' not in output, f'{entry} printed a traceback:\n{output[-3000:]}'
    assert any(word in output for word in MESSAGE_WORDS), f'{entry}: no refusal message:\n{output[-2000:]}'
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error: ')]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), \
        f'{entry}: the refusal is not one "Error: ..." line at the end:\n{result.stderr[-2000:]}'
    return output


def _network_case(entry, case, tmp_path, shared):
    blob = hp.network_payloads(str(tmp_path / 'MARKER'))[case]
    output = _run_case(entry, blob, tmp_path, shared)
    assert 'network.pkl' in output
    if entry != 'legacy':
        assert f'--network={tmp_path / "work" / "network.pkl"}' in output or entry in ('calc_metrics', 'train')
    return output


def _detector_case(case, tmp_path, shared):
    blob = hp.detector_payloads(str(tmp_path / 'MARKER'))[case]
    output = _run_case('calc_metrics', blob, tmp_path, shared, file_name='inception-2015-12-05.pkl',
                       as_detector=True)
    assert 'inception-2015-12-05.pkl' in output


def _steering_case(case, tmp_path, shared):
    blob = hp.steering_payloads(str(tmp_path / 'outside'))[case]
    _run_case('calc_metrics', blob, tmp_path, shared, data=False)
    assert os.listdir(tmp_path / 'outside') == []

#----------------------------------------------------------------------------
# Fast subset: one case per hole, one process each.

@pytest.mark.parametrize('entry,case', [('calc_metrics', 'resource-dag-submodules'),
                                        ('gen_images', 'dtype-void-field-out-of-range'),
                                        ('legacy', 'state-compiled-call-impl')])
def test_hostile_network_in_a_process_fast_subset(entry, case, tmp_path, shared):
    _network_case(entry, case, tmp_path, shared)


def test_the_viewer_refuses_a_hostile_network_before_serving_fast_subset(tmp_path, shared):
    output = _network_case('viewer', 'exec-dotted-torch-os.system', tmp_path, shared)
    assert 'Viewer on http' not in output


def test_hostile_detector_in_a_process_fast_subset(tmp_path, shared):
    _detector_case('exec-dotted-torch-os.system', tmp_path, shared)


def test_steering_snapshot_in_a_process_fast_subset(tmp_path, shared):
    _steering_case('steer-class-name-import', tmp_path, shared)

#----------------------------------------------------------------------------
# The full matrix (slow).

_MATRIX = [(entry, case) for case in REPRESENTATIVES for entry in ENTRY_POINTS] + \
    [(entry, case) for case in LATE_ENTRY_CASES for entry in LATE_ENTRY_POINTS] + \
    [('legacy', case) for case in NETWORK_CASES if case not in REPRESENTATIVES]


@pytest.mark.slow
@pytest.mark.parametrize('entry,case', _MATRIX)
def test_hostile_network_in_a_process(entry, case, tmp_path, shared):
    _network_case(entry, case, tmp_path, shared)


@pytest.mark.slow
@pytest.mark.parametrize('case', DETECTOR_CASES)
def test_hostile_detector_in_a_process(case, tmp_path, shared):
    _detector_case(case, tmp_path, shared)


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(hp.steering_payloads('outside')))
def test_steering_snapshot_in_a_process(case, tmp_path, shared):
    _steering_case(case, tmp_path, shared)

#----------------------------------------------------------------------------
