"""bench/bench_ops.py: the CPU (reference-only) run works end to end, and the comparison flags a wrong kernel."""

import json

import torch

from bench_helpers import load_bench

bench_ops = load_bench('bench_ops')

#----------------------------------------------------------------------------

def test_cpu_run_writes_json_with_reference_timings_only(tmp_path, capsys):
    out = tmp_path / 'ops.json'
    assert bench_ops.main(['--device', 'cpu', '--ops', 'bias_act', '--reps', '1', '--out', str(out)]) == 0
    data = json.loads(out.read_text())
    assert data['machine']['torch'] == torch.__version__
    assert data['settings']['device'] == 'cpu'
    rows = data['rows']
    assert {row['dtype'] for row in rows} == {'float32', 'float16'}
    assert all(row['op'] == 'bias_act' and row['ref_fwd_ms'] > 0 and 'fast_fwd_ms' not in row for row in rows)
    assert 'reference only' in capsys.readouterr().out

def _case(fast_scale):
    x = torch.randn([2, 3, 4, 5], dtype=torch.float32, requires_grad=True)
    b = torch.randn([3], dtype=torch.float32, requires_grad=True)
    ref_fn = lambda x, b: (x + b.reshape(1, -1, 1, 1)).tanh()
    fast_fn = lambda x, b: (x + b.reshape(1, -1, 1, 1)).tanh() * fast_scale
    return ref_fn, fast_fn, [x, b]

def test_run_case_reports_zero_error_for_an_exact_fast_path():
    row = bench_ops.run_case('exact', *_case(1.0), torch.device('cpu'), torch.float32, reps=1, fast_available=True)
    assert row['ok'] and row['err_fwd'] == row['err_grad'] == row['err_gradgrad'] == 0
    assert row['speedup_fwd'] > 0

def test_run_case_flags_a_fast_path_that_is_off_by_one_percent():
    row = bench_ops.run_case('off', *_case(1.01), torch.device('cpu'), torch.float32, reps=1, fast_available=True)
    assert not row['ok']
    assert row['rel_err_fwd'] > 1e-3 and row['err_grad'] > 0 and row['err_gradgrad'] > 0

def test_case_modules_follow_the_protocol():
    # Every bench/cases_<op>.py present gives (name, ref_fn, fast_fn, inputs) tuples; small ones are run on CPU (the
    # protocol asks for small CPU shapes, but a large case only costs time, so it is checked for structure only).
    for op_name in bench_ops.OPS:
        cases_fn, _ = bench_ops.get_op(op_name)
        if cases_fn is None:
            continue
        for name, ref_fn, fast_fn, inputs in cases_fn(torch.device('cpu'), torch.float32):
            assert isinstance(name, str) and callable(ref_fn) and callable(fast_fn)
            assert all(isinstance(t, torch.Tensor) for t in inputs), f'{op_name} {name}: inputs must be tensors'
            if sum(t.numel() for t in inputs) <= 20_000:
                assert ref_fn(*inputs).shape == fast_fn(*inputs).shape, f'{op_name} {name}'

def test_unknown_op_is_skipped_with_a_note(tmp_path, capsys):
    assert bench_ops.main(['--device', 'cpu', '--ops', 'no_such_op', '--out', str(tmp_path / 'o.json')]) == 0
    assert 'no bench/cases_no_such_op.py' in capsys.readouterr().out

#----------------------------------------------------------------------------
