"""Drill: every hostile payload of tests/hostile_payloads.py through the safe loader, against plain pickle as the
baseline measured in the same run (issue 14).

    python bench/bench_hostile_inputs.py [--timeout=60] [--out=FILE]

Each payload is loaded in its own child process under a 4 GiB address-space limit, once with the safe loader
(legacy.load_network_pkl, or the detector loader for detector files) and once with plain `pickle.loads` followed
by `.eval()` of every module it holds (what the official tools do next). Outcomes: executed (the payload's marker
file appeared), signal (crash), timeout (hang), refused (the loader's documented errors), error (any other
exception), loaded. Prints a table and writes JSON (default bench/results/hostile_inputs.json) with the machine,
versions and counts.
"""

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

MEMORY_LIMIT = 4 << 30

_CHILD = r'''
import os, pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path.insert(0, {repo!r})
import torch
from training import networks_stylegan2  # Plain pickle finds our persistent classes once they are imported.
mode, path = sys.argv[1], sys.argv[2]
try:
    if mode == 'safe-network':
        import legacy
        legacy.load_network_pkl(path)
    elif mode == 'safe-detector':
        from metrics import metric_utils
        metric_utils.load_detector_file(path)
    else:
        data = pickle.loads(open(path, 'rb').read())
        for value in (data.values() if isinstance(data, dict) else [data]):
            if isinstance(value, torch.nn.Module):
                value.eval()
    print('OUTCOME loaded')
except (pickle.UnpicklingError, OSError) as err:
    print('OUTCOME refused' if mode.startswith('safe') else 'OUTCOME error', type(err).__name__)
except BaseException as err:
    print('OUTCOME error', type(err).__name__)
'''


def run_child(mode, path, marker, timeout):
    """One load in a child process -> (outcome name, exception type name or '')."""
    code = _CHILD.format(limit=MEMORY_LIMIT, repo=REPO_ROOT)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    try:
        result = subprocess.run([sys.executable, '-c', code, mode, path], capture_output=True, text=True,
                                timeout=timeout, env=env, cwd=os.path.dirname(path))
    except subprocess.TimeoutExpired:
        return 'timeout', ''
    if os.path.exists(marker):
        os.remove(marker)
        return 'executed', ''
    if result.returncode < 0:
        return 'signal', f'signal {-result.returncode}'
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith('OUTCOME ')]
    if not lines:
        return 'error', (result.stderr.strip().splitlines() or ['?'])[-1][:80]
    return lines[-1][1], (lines[-1][2] if len(lines[-1]) > 2 else '')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--timeout', type=float, default=60, help='seconds per child before it counts as a hang')
    parser.add_argument('--out', default=os.path.join(REPO_ROOT, 'bench', 'results', 'hostile_inputs.json'))
    args = parser.parse_args()
    import numpy as np
    import torch
    from tests import hostile_payloads as hp

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        marker = os.path.join(folder, 'MARKER')
        cases = [('network', name, blob) for name, blob in sorted(hp.network_payloads(marker).items())]
        cases += [('detector', name, blob) for name, blob in sorted(hp.detector_payloads(marker).items())]
        for kind, name, blob in cases:
            path = os.path.join(folder, 'inception-2015-12-05.pkl' if kind == 'detector' else 'network.pkl')
            with open(path, 'wb') as f:
                f.write(blob)
            started = time.time()
            safe, safe_error = run_child(f'safe-{kind}', path, marker, args.timeout)
            safe_sec = time.time() - started
            plain, plain_error = run_child('plain', path, marker, args.timeout)
            rows.append(dict(kind=kind, case=name, safe=safe, safe_error=safe_error, safe_sec=round(safe_sec, 2),
                             plain=plain, plain_error=plain_error))
            print(f'{kind:9s} {name:36s} safe: {safe:8s} ({safe_sec:5.1f} s)   plain pickle: {plain} {plain_error}',
                  flush=True)

    totals = {loader: dict(collections.Counter(row[loader] for row in rows)) for loader in ['safe', 'plain']}
    print(f'\n{len(rows)} payloads. Safe loader: {totals["safe"]}. Plain pickle: {totals["plain"]}.')
    result = dict(machine=dict(platform=platform.platform(), python=platform.python_version(), cpus=os.cpu_count()),
                  versions=dict(torch=torch.__version__, numpy=np.__version__),
                  settings=dict(memory_limit_bytes=MEMORY_LIMIT, timeout_sec=args.timeout),
                  totals=totals, cases=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
