"""bench/run_all.py: one small configuration end to end, with the profile of where our path spends its time."""

import importlib.util
import json
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_bench():
    spec = importlib.util.spec_from_file_location('run_all', os.path.join(REPO_ROOT, 'bench', 'run_all.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_configuration_with_profile_writes_json(tmp_path, capsys):
    out = tmp_path / 'run_all.json'
    run_all = _load_bench()
    assert run_all.main(['--only', 'inference stylegan2 64', '--batch-scale', '0.125', '--reps', '1', '--profile',
                         '--out', str(out)]) == 0
    data = json.loads(out.read_text())
    assert data['settings']['profile'] is True
    [row] = data['rows']
    assert (row['kind'], row['cfg'], row['resolution'], row['batch']) == ('inference', 'stylegan2', 64, 1)
    assert row['ours_s'] > 0 and row['plain_s'] > 0 and row['max_rel_diff'] < 1e-4  # Same images either path.
    profile = row['profile']
    shares = [share for _name, _seconds, share in profile['top']]
    assert len(shares) == 6 and shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9
    # StyleGAN2 with official channels is convolution-bound: the claim issue 15's note rests on.
    assert 0.3 < profile['conv_share'] <= 1
    assert any('conv' in name for name, _seconds, _share in profile['top'])
    assert 'profile: convolutions' in capsys.readouterr().out
