"""Fast op kernels against their references: agreement (forward, gradient, gradient of gradient) and speed.

    python bench/bench_ops.py [--device cuda|cpu] [--ops bias_act,upfirdn2d,filtered_lrelu] [--out FILE]
                              [--reps N] [--dtypes float32,float16]

Prints one table row per (op, case, dtype) with the max abs error of the fast path against the reference and the
speed ratio, and writes JSON (machine, torch/CUDA versions, settings, rows) to --out. On CPU there is no fast path:
only the reference half runs (timings), and the table says so. Exit status 1 if any error exceeds its tolerance.

Adding an op: create bench/cases_<op>.py with
    PLUGIN_NAME = '<op>_plugin'                        # optional: reported, and the fast half is skipped without it
    def cases(device, dtype) -> list of (name, ref_fn, fast_fn, inputs)
where ref_fn(*inputs) and fast_fn(*inputs) return one tensor and the inputs with requires_grad=True are the ones
differentiated. Keep CPU shapes small (the CPU run is a test). bias_act's cases are below and follow the same protocol.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

import torch

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

import dnnlib  # noqa: E402
from torch_utils import custom_ops  # noqa: E402 (needs the repository root on sys.path)

# Max abs error allowed relative to the reference's largest magnitude, per dtype (kernels may use fast math and a
# different summation order; float16 rounds every stored value to 11 bits).
REL_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2, torch.float64: 1e-10}

#----------------------------------------------------------------------------
# bias_act cases (the other ops' live in bench/cases_<op>.py).

def _bias_act_cases(device, dtype):
    from torch_utils.ops import bias_act
    small = device.type != 'cuda'
    shapes = [('NCHW', [2, 8, 9, 7]), ('FC', [3, 33])] if small else \
        [('NCHW 512x32x32', [8, 512, 32, 32]), ('NCHW odd', [5, 129, 67, 61]), ('FC', [64, 513])]
    settings = [dict(act='lrelu', clamp=256), dict(act='linear'), dict(act='swish', alpha=None, gain=0.7)]
    gen = torch.Generator().manual_seed(0)
    result = []
    for shape_name, shape in shapes:
        for kwargs in settings:
            x = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_(True)
            b = torch.randn([shape[1]], generator=gen).to(device, dtype).requires_grad_(True)
            name = f'{shape_name} {kwargs["act"]}' + (' clamp' if kwargs.get('clamp') else '')
            ref_fn = lambda x, b, kw=kwargs: bias_act.bias_act(x, b, impl='ref', **kw)
            fast_fn = lambda x, b, kw=kwargs: bias_act.bias_act(x, b, impl='cuda', **kw)
            result.append((name, ref_fn, fast_fn, [x, b]))
        if not small and len(shape) == 4:
            x = torch.randn(shape, generator=gen).to(device, dtype).to(memory_format=torch.channels_last)
            b = torch.randn([shape[1]], generator=gen).to(device, dtype)
            result.append((f'{shape_name} lrelu channels_last', lambda x, b: bias_act.bias_act(x, b, impl='ref'),
                           lambda x, b: bias_act.bias_act(x, b, impl='cuda'), [x.requires_grad_(True), b]))
    return result

def _load_case_module(op_name):
    """bench/cases_<op>.py as a module, or None if that file does not exist (yet)."""
    path = os.path.join(BENCH_DIR, f'cases_{op_name}.py')
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location(f'bench_cases_{op_name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def get_op(op_name):
    """(cases_fn, plugin_name or None) for an op: the built-in bias_act table or bench/cases_<op>.py."""
    if op_name == 'bias_act':
        return _bias_act_cases, 'bias_act_plugin'
    module = _load_case_module(op_name)
    if module is None:
        return None, None
    return module.cases, getattr(module, 'PLUGIN_NAME', None)

OPS = ['bias_act', 'upfirdn2d', 'filtered_lrelu']

#----------------------------------------------------------------------------
# Measurement.

def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)

def time_ms(fn, device, reps, warmup=2):
    """Median wall time of fn() in milliseconds over `reps` runs (after `warmup` runs), GPU work included."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)

def outputs_to_order2(fn, inputs, seed=1):
    """[y, dy/dinputs..., d(sum of grads * v)/dinputs...] for the inputs that require grad; None grads -> zeros."""
    diff_inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    y = fn(*inputs)
    gen = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=gen).to(y.device, y.dtype)
    grads = torch.autograd.grad(y, diff_inputs, dy, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, diff_inputs)]
    probe = sum((g.float() * torch.randn(g.shape, generator=gen).to(g.device)).sum() for g in grads
                if g.requires_grad)
    if isinstance(probe, torch.Tensor):
        grads2 = torch.autograd.grad(probe, diff_inputs, allow_unused=True)
    else:  # No gradient depends on the inputs again (e.g. a linear op): the second derivative is zero.
        grads2 = [None] * len(diff_inputs)
    grads2 = [torch.zeros_like(t) if g is None else g for g, t in zip(grads2, diff_inputs)]
    return [y.detach()], [g.detach() for g in grads], [g.detach() for g in grads2]

def max_rel_error(ours, ref):
    """Max abs difference over a list of tensors, divided by the reference's max magnitude (>= 1e-6)."""
    err = max((float((a.double() - b.double()).abs().max()) for a, b in zip(ours, ref)), default=0.0)
    scale = max((float(b.double().abs().max()) for b in ref), default=0.0)
    return err, err / max(scale, 1e-6)

#----------------------------------------------------------------------------

def run_case(name, ref_fn, fast_fn, inputs, device, dtype, reps, fast_available):
    """One table row (dict): errors of fast vs ref at orders 0-2 and both timings (forward; forward + backward)."""
    row = dict(case=name, dtype=str(dtype).replace('torch.', ''), shapes=[list(t.shape) for t in inputs])
    diff_inputs = [t for t in inputs if t.requires_grad]
    def fwd(fn):
        with torch.no_grad():
            fn(*inputs)
    def fwd_bwd(fn):
        y = fn(*inputs)
        torch.autograd.grad(y, diff_inputs, torch.ones_like(y))
    row['ref_fwd_ms'] = time_ms(lambda: fwd(ref_fn), device, reps)
    row['ref_fwd_bwd_ms'] = time_ms(lambda: fwd_bwd(ref_fn), device, reps)
    if not fast_available:
        return row
    ref_out = outputs_to_order2(ref_fn, inputs)
    fast_out = outputs_to_order2(fast_fn, inputs)
    tolerance = REL_TOLERANCE[dtype]
    for order, key in enumerate(['fwd', 'grad', 'gradgrad']):
        abs_err, rel_err = max_rel_error(fast_out[order], ref_out[order])
        row[f'err_{key}'] = abs_err
        row[f'rel_err_{key}'] = rel_err
    row['ok'] = all(row[f'rel_err_{key}'] <= tolerance for key in ['fwd', 'grad', 'gradgrad'])
    row['fast_fwd_ms'] = time_ms(lambda: fwd(fast_fn), device, reps)
    row['fast_fwd_bwd_ms'] = time_ms(lambda: fwd_bwd(fast_fn), device, reps)
    row['speedup_fwd'] = row['ref_fwd_ms'] / row['fast_fwd_ms']
    row['speedup_fwd_bwd'] = row['ref_fwd_bwd_ms'] / row['fast_fwd_bwd_ms']
    return row

def fast_path_status(plugin_name, device):
    """(available, reason): whether the op's kernel can run on this device."""
    if device.type != 'cuda':
        return False, 'reference only: no fast path on CPU'
    if plugin_name is None:
        return True, 'no plugin declared'
    if custom_ops.try_get_plugin(plugin_name) is None:
        return False, f'reference only: {custom_ops.plugin_status(plugin_name)}'
    return True, 'plugin loaded'

#----------------------------------------------------------------------------

def _fmt(value, spec):
    """format(value, spec), or '-' padded to the same width when there is no value."""
    return format(value, spec) if isinstance(value, (int, float)) else '-'.rjust(int(spec.split('.')[0]))

def print_table(rows):
    header = f'{"op":<15} {"case":<34} {"dtype":<8} {"err fwd":>9} {"err grad":>9} {"err gg":>9} ' \
             f'{"ref fwd":>9} {"fast fwd":>9} {"x":>6} {"ref f+b":>9} {"fast f+b":>9} {"x":>6}  status'
    print(header)
    print('-' * len(header))
    for r in rows:
        status = r['status'] if 'ok' not in r else ('ok' if r['ok'] else 'MISMATCH')
        print(f'{r["op"]:<15} {r["case"][:34]:<34} {r["dtype"]:<8} {_fmt(r.get("err_fwd"), "9.2e")} '
              f'{_fmt(r.get("err_grad"), "9.2e")} {_fmt(r.get("err_gradgrad"), "9.2e")} '
              f'{_fmt(r["ref_fwd_ms"], "9.3f")} {_fmt(r.get("fast_fwd_ms"), "9.3f")} '
              f'{_fmt(r.get("speedup_fwd"), "6.2f")} {_fmt(r["ref_fwd_bwd_ms"], "9.3f")} '
              f'{_fmt(r.get("fast_fwd_bwd_ms"), "9.3f")} {_fmt(r.get("speedup_fwd_bwd"), "6.2f")}  {status}')
    print('(times: median milliseconds; x: reference time / fast time; err: max abs error of fast vs reference)')

def machine_info(device):
    info = dict(hostname=platform.node(), platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__, cuda=torch.version.cuda, cpu_threads=torch.get_num_threads(),
                timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat())
    if device.type == 'cuda':
        info.update(gpu=torch.cuda.get_device_name(device), gpu_capability=list(torch.cuda.get_device_capability()),
                    cudnn=torch.backends.cudnn.version())
    return info

def write_json_atomic(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dnnlib.util.write_file_atomic(path, lambda f: json.dump(data, f, indent=2), mode='w')

#----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--ops', default=','.join(OPS), help='comma-separated op names (default: %(default)s)')
    parser.add_argument('--dtypes', default='float32,float16', help='comma-separated (default: %(default)s)')
    parser.add_argument('--reps', type=int, default=20, help='timed runs per measurement (median is reported)')
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results', 'ops.json'), help='JSON output file')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device=cuda but torch.cuda.is_available() is False; use --device=cpu')
    for name in args.dtypes.split(','):
        if not isinstance(getattr(torch, name, None), torch.dtype) or getattr(torch, name) not in REL_TOLERANCE:
            parser.error(f'--dtypes: unknown dtype {name!r}; choose from float32, float16, bfloat16, float64')
    return args

def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(',')]
    rows, notes = [], []
    for op_name in [name.strip() for name in args.ops.split(',') if name.strip()]:
        cases_fn, plugin_name = get_op(op_name)
        if cases_fn is None:
            notes.append(f'{op_name}: skipped, no bench/cases_{op_name}.py')
            continue
        fast_available, status = fast_path_status(plugin_name, device)
        notes.append(f'{op_name}: {status}')
        for dtype in dtypes:
            for name, ref_fn, fast_fn, inputs in cases_fn(device, dtype):
                row = run_case(name, ref_fn, fast_fn, inputs, device, dtype, args.reps, fast_available)
                rows.append(dict(op=op_name, status=status, **row))
    print_table(rows)
    for note in notes:
        print(note)
    settings = dict(device=args.device, ops=args.ops, dtypes=args.dtypes, reps=args.reps,
                    env_DNNLIB_OPS=os.environ.get('DNNLIB_OPS'), rel_tolerance={str(k): v for k, v in
                                                                               REL_TOLERANCE.items()})
    write_json_atomic(args.out, dict(machine=machine_info(device), settings=settings, notes=notes, rows=rows))
    print(f'wrote {args.out}')
    return 0 if all(row.get('ok', True) for row in rows) else 1

if __name__ == '__main__':
    sys.exit(main())

#----------------------------------------------------------------------------
