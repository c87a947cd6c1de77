"""bench/run_all.py: one small configuration end to end, with the profile of where our path spends its time and
the opt-in bfloat16 column."""

import json

from bench_helpers import load_bench


def test_one_configuration_with_profile_writes_json(tmp_path, capsys):
    out = tmp_path / 'run_all.json'
    run_all = load_bench('run_all')
    assert run_all.main(['--only', 'inference stylegan2 64', '--batch-scale', '0.125', '--reps', '1', '--profile',
                         '--bf16', '--out', str(out)]) == 0
    data = json.loads(out.read_text())
    assert data['settings']['profile'] is True
    [row] = data['rows']
    assert (row['kind'], row['cfg'], row['resolution'], row['batch']) == ('inference', 'stylegan2', 64, 1)
    assert row['ours_s'] > 0 and row['plain_s'] > 0 and row['max_rel_diff'] < 1e-4  # Same images either path.
    # The opt-in bfloat16 path ran (images not equal) and stays close to float32.
    assert row['bf16_s'] > 0 and 1e-4 < row['bf16_max_rel_diff'] < 0.1 and data['settings']['bf16'] is True
    profile = row['profile']
    shares = [share for _name, _seconds, share in profile['top']]
    assert len(shares) == 6 and shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9
    # StyleGAN2 with official channels is convolution-bound: the claim issue 15's note rests on.
    assert 0.3 < profile['conv_share'] <= 1
    assert any('conv' in name for name, _seconds, _share in profile['top'])
    assert 'profile: convolutions' in capsys.readouterr().out
