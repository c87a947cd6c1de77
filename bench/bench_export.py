"""Benchmark: CPU images/s of exported generators (ONNX float32, int8 dynamic, int8 static under onnxruntime) against
PyTorch eager on the same machine, in one run.

    python bench/bench_export.py [--cfgs=stylegan2,stylegan3-t] [--resolution=64] [--channels=128] [--batch=4]
                                 [--seconds=3] [--threads=N] [--out=FILE]

Each config is a randomly initialised generator (seed 0) of the given size; the PyTorch baseline is G(z) with its
default call (fused modulated convolutions, noise_mode='const') under torch.no_grad. The ONNX files are what
onnx_export.py writes (constants folded; int8 via onnxruntime's quantiser). For each it prints file size, images/s,
the ratio to PyTorch and the PSNR against PyTorch's images. Writes JSON (default bench/results/export_cpu.json).
Needs requirements-export.txt.
"""

import argparse
import json
import os
import platform
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch_utils import export  # noqa: E402
from training import networks_stylegan2, networks_stylegan3  # noqa: E402

#----------------------------------------------------------------------------

def make_generator(cfg, resolution, channels):
    """Random-init G of a config; channel_base chosen so the widest layers have `channels` channels."""
    torch.manual_seed(0)
    common = dict(z_dim=channels, w_dim=channels, c_dim=0, img_resolution=resolution, img_channels=3,
                  channel_max=channels, mapping_kwargs=dict(num_layers=2))
    if cfg == 'stylegan2':
        return networks_stylegan2.Generator(channel_base=channels * resolution, **common).eval()
    if cfg in ('stylegan3-t', 'stylegan3-r'):
        radial = cfg == 'stylegan3-r'
        return networks_stylegan3.Generator(channel_base=channels * 64 * (2 if radial else 1), conv_kernel=1 if radial
                                            else 3, use_radial_filters=radial, **common).eval()
    raise ValueError(f'unknown cfg {cfg!r}: stylegan2, stylegan3-t or stylegan3-r')


def bench_config(cfg, args, workdir):
    """Rows (one per runtime) for one config."""
    G = make_generator(cfg, args.resolution, args.channels).requires_grad_(False)
    wrapper = export.GeneratorWrapper(G)
    inputs = wrapper.example_inputs(args.batch, seed=1)
    with torch.no_grad():
        reference = G(inputs[0], None, noise_mode='const').numpy()
    torch_speed = export.images_per_second(lambda: G(inputs[0], None, noise_mode='const'), args.batch,
                                           args.seconds)
    rows = [dict(cfg=cfg, runtime='pytorch', size_mib=None, img_per_sec=torch_speed, ratio=1.0, psnr_db=None)]

    fp32 = os.path.join(workdir, f'{cfg}_fp32.onnx')
    export.export_onnx(wrapper, fp32)
    export.fold_constants(fp32)
    files = {'onnx fp32': fp32}
    for mode in ('dynamic', 'static'):
        files[f'onnx int8 {mode}'] = os.path.join(workdir, f'{cfg}_int8_{mode}.onnx')
        calibration = [wrapper.example_inputs(1, seed=100 + i) for i in range(args.calib_samples)]
        export.quantize_int8(fp32, files[f'onnx int8 {mode}'], mode=mode, calibration_inputs=calibration)
    for runtime, path in files.items():
        session = export.onnx_session(path, threads=args.threads)
        output = export.run_onnx(session, inputs)
        speed = export.images_per_second(lambda: export.run_onnx(session, inputs), args.batch, args.seconds)
        rows.append(dict(cfg=cfg, runtime=runtime, size_mib=os.path.getsize(path) / 2**20, img_per_sec=speed,
                         ratio=speed / torch_speed, psnr_db=export.psnr(reference, output)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cfgs', default='stylegan2,stylegan3-t')
    parser.add_argument('--resolution', type=int, default=64)
    parser.add_argument('--channels', type=int, default=128)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--seconds', type=float, default=3.0, help='Timing per runtime (after one warm-up run)')
    parser.add_argument('--calib-samples', type=int, default=16)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    try:
        export.require_onnx()
    except export.MissingExportDependency as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)  # The same thread count for PyTorch and onnxruntime.

    with tempfile.TemporaryDirectory() as workdir:
        rows = [row for cfg in args.cfgs.split(',') for row in bench_config(cfg, args, workdir)]
    print(f'{"cfg":>12} {"runtime":>17} {"MiB":>7} {"img/s":>8} {"vs torch":>9} {"PSNR dB":>8}')
    for row in rows:
        size = f'{row["size_mib"]:.2f}' if row['size_mib'] is not None else '-'
        psnr = f'{row["psnr_db"]:.1f}' if row['psnr_db'] is not None else '-'
        print(f'{row["cfg"]:>12} {row["runtime"]:>17} {size:>7} {row["img_per_sec"]:>8.2f} {row["ratio"]:>8.2f}x '
              f'{psnr:>8}')

    import onnxruntime
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'export_cpu.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    meta = dict(torch=torch.__version__, onnxruntime=onnxruntime.__version__, threads=args.threads,
                machine=platform.machine(), processor=platform.processor(), cpu_count=os.cpu_count(),
                resolution=args.resolution, channels=args.channels, batch=args.batch, seconds=args.seconds,
                calib_samples=args.calib_samples, baseline='pytorch eager G(z), fused modconv, no_grad')
    tmp = out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(meta=meta, results=rows), f, indent=2, default=float)
    os.replace(tmp, out)
    print(f'wrote {out}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()
