"""Doctor: `python -m torch_utils.ops [--no-build]` prints, per op, which implementation this machine uses and why.

When a CUDA toolchain is present it builds the plugins (compile-only when there is no GPU, for the architectures in
TORCH_CUDA_ARCH_LIST, default 9.0), and with a GPU it also runs each kernel's parity check against the reference.
"""

import argparse
import importlib
import os
import sys
import time
import warnings

# Ops with a CUDA kernel, by module; the rest (conv2d_resample, fma, conv2d_gradfix, grid_sample_gradfix) are
# reference-only compositions of PyTorch ops and of these.
FAST_OPS = ['bias_act', 'upfirdn2d', 'filtered_lrelu']
REF_ONLY_OPS = ['conv2d_resample', 'fma', 'conv2d_gradfix', 'grid_sample_gradfix']


def _import_op(name):
    try:
        return importlib.import_module(f'torch_utils.ops.{name}'), None
    except Exception as e:  # The doctor reports a broken module instead of dying on it.
        return None, f'{type(e).__name__}: {e}'


def _build(plugin_name):
    from torch_utils import custom_ops
    spec = custom_ops._specs[plugin_name]
    start = time.time()
    try:
        custom_ops.get_plugin(plugin_name, spec['sources'], spec['headers'], spec['source_dir'], **spec['build_kwargs'])
        return True, f'built and loaded in {time.time() - start:.0f}s'
    except custom_ops.PluginBuildError as e:
        lines = str(e).splitlines()
        return False, '\n      '.join(lines[:8])


def _parity(op_module, op_name):
    check = getattr(op_module, '_parity_check', None)
    if check is None:
        return 'no parity check defined'
    ok, details = check()
    return ('matches the reference' if ok else 'DISAGREES with the reference') + f' ({details})'


def diagnose(build=True):
    """Print the diagnosis; return 0."""
    import torch
    from torch_utils import custom_ops
    has_gpu = torch.cuda.is_available()
    print(f'torch {torch.__version__}, CUDA build {torch.version.cuda}, GPU: '
          f'{torch.cuda.get_device_name(0) if has_gpu else "none"}, DNNLIB_OPS={os.environ.get("DNNLIB_OPS", "")!r}')
    problem = custom_ops.toolchain_problem()
    print(f'CUDA toolchain: {"ok (" + str(custom_ops.find_cuda_home()) + ")" if problem is None else problem}')
    if build and problem is None and not has_gpu and not os.environ.get('TORCH_CUDA_ARCH_LIST'):
        os.environ['TORCH_CUDA_ARCH_LIST'] = '9.0'
        print('No GPU: compile-only check for TORCH_CUDA_ARCH_LIST=9.0 (set it to choose other architectures).')
    for name in FAST_OPS:
        module, error = _import_op(name)
        if module is None:
            print(f'  {name:20s} BROKEN: {error}')
            continue
        plugin = f'{name}_plugin'
        status = 'reference'
        if custom_ops.forced_impl() == 'ref':
            reason = 'DNNLIB_OPS=ref forces it'
        elif problem is not None:
            reason = problem
        elif not build:
            reason = 'plugin not built (--no-build)'
        else:
            ok, reason = _build(plugin)
            if ok and has_gpu:
                reason += '; ' + _parity(module, name)
                status = 'CUDA kernel' if 'matches' in reason else 'reference'
            elif ok:
                reason += '; no GPU here, so tensors stay on the reference path'
        print(f'  {name:20s} {status:12s} {reason}')
    for name in REF_ONLY_OPS:
        module, error = _import_op(name)
        print(f'  {name:20s} {"BROKEN" if module is None else "reference":12s} '
              f'{error or "PyTorch ops (fast on every device; no plugin needed)"}')
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m torch_utils.ops', description=__doc__.splitlines()[0])
    parser.add_argument('--no-build', action='store_true', help='do not build plugins, only report')
    args = parser.parse_args(argv)
    warnings.simplefilter('ignore', UserWarning)  # torch's "No CUDA runtime is found" noise on CPU machines.
    return diagnose(build=not args.no_build)


if __name__ == '__main__':
    sys.exit(main())
