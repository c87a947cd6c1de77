"""Export a trained generator to ONNX (optionally float16 or int8) or TorchScript.

Examples:
    python onnx_export.py --network=stylegan3-r-ffhq-1024x1024.pkl --output=model.onnx --check=1
    trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 --optShapes=input:1x512
    python onnx_export.py --network=net.pkl --output=model-int8.onnx --quantize=int8
    python onnx_export.py --network=net.pkl --output=model.pt --format=torchscript --trunc=0.7

The graph takes `input` [N, z_dim] (and `c` [N, c_dim] for conditional networks; --what=synthesis: ws
[N, num_ws, w_dim]) with a dynamic batch axis N, and returns `output` [N, C, H, W] float32 in [-1, 1] (ws for
--what=mapping). Truncation is baked in, noise is the network's constant noise, the ops are plain ONNX ops.
"""

import os
import shutil
import tempfile

import click
import numpy as np
import torch

import gen_images
from dnnlib import cli
from torch_utils import export

CHECK_BATCHES = (1, 4)       # --check runs these batch sizes (two, so a fixed batch axis would show).
FP32_TOLERANCE = 1e-3        # --check fails above this max abs difference (float32 export).
BENCH_BATCH = 4              # Batch of the images/s figures printed by --quantize.

#----------------------------------------------------------------------------

def check_against_pytorch(wrapper, run_exported, device, tolerance):
    """Run the exported model next to PyTorch on random inputs of each CHECK_BATCHES size; print and return the
    largest max abs difference. run_exported(inputs tuple of CPU tensors) -> numpy output."""
    worst = 0.0
    for batch_size in CHECK_BATCHES:
        inputs = wrapper.example_inputs(batch_size, seed=1000 + batch_size, device=device)
        with torch.no_grad(), export.reference_ops():
            expected = wrapper(*inputs).cpu().numpy()
        actual = run_exported(tuple(t.cpu() for t in inputs))
        if actual.shape != expected.shape:
            raise click.ClickException(f'check: batch {batch_size} gives shape {actual.shape}, PyTorch '
                                       f'{expected.shape}')
        diff = float(np.abs(actual - expected).max())
        click.echo(f'check: batch {batch_size}: max abs difference {diff:.3g} (PSNR '
                   f'{export.psnr(expected, actual):.1f} dB), output {list(actual.shape)}')
        worst = max(worst, diff)
    if tolerance is not None and worst > tolerance:
        raise click.ClickException(f'check failed: max abs difference {worst:.3g} > {tolerance:g}')
    return worst


def report_quantization(wrapper, fp32_path, int8_path):
    """Print file sizes, CPU images/s (batch BENCH_BATCH) and PSNR of the int8 model against the float32 one."""
    inputs = wrapper.example_inputs(BENCH_BATCH, seed=7)
    sessions = {name: export.onnx_session(path) for name, path in [('fp32', fp32_path), ('int8', int8_path)]}
    outputs = {name: export.run_onnx(session, inputs) for name, session in sessions.items()}
    for name, path in [('fp32', fp32_path), ('int8', int8_path)]:
        speed = export.images_per_second(lambda: export.run_onnx(sessions[name], inputs), BENCH_BATCH)
        click.echo(f'{name}: {os.path.getsize(path) / 2**20:.2f} MiB, {speed:.2f} images/s on CPU')
    click.echo(f'int8 vs fp32: PSNR {export.psnr(outputs["fp32"], outputs["int8"]):.2f} dB over {BENCH_BATCH} '
               f'images, max abs difference {np.abs(outputs["fp32"] - outputs["int8"]).max():.3g}')

#----------------------------------------------------------------------------

def write_onnx(wrapper, workdir, device, fp16, quantize, calib_samples):
    """Export, fold constants, then convert (fp16) or quantise (int8) into workdir; returns (file, float32 file)."""
    fp32_path = os.path.join(workdir, 'fp32.onnx')
    export.export_onnx(wrapper, fp32_path, device=device)
    export.fold_constants(fp32_path)
    if fp16:
        final = os.path.join(workdir, 'fp16.onnx')
        export.convert_onnx_fp16(fp32_path, final)
    elif quantize != 'none':
        final = os.path.join(workdir, 'int8.onnx')
        mode = 'static' if quantize == 'int8-static' else 'dynamic'
        calibration = [wrapper.example_inputs(1, seed=2000 + i) for i in range(calib_samples)]
        click.echo(f'Quantising ({mode}{f", {calib_samples} random calibration inputs" if mode == "static" else ""})'
                   '...')
        export.quantize_int8(fp32_path, final, mode=mode, calibration_inputs=calibration)
    else:
        final = fp32_path
    return final, fp32_path


def check_options(fmt, fp16, quantize, what):
    if fmt == 'torchscript' and (fp16 or quantize != 'none'):
        raise click.UsageError('--fp16 and --quantize apply to --format=onnx only')
    if fp16 and quantize != 'none':
        raise click.UsageError('--fp16 and --quantize exclude each other: choose one')
    if quantize != 'none' and what == 'mapping':
        click.echo('warning: quantising the mapping network alone saves little', err=True)


EXAMPLES = '''\b
Examples:
  # The whole generator with truncation 0.7, checked under onnxruntime:
  python onnx_export.py --network=network-snapshot-000100.pkl --output=model.onnx --trunc=0.7 --check=1
  # An int8 (dynamic) copy for CPU inference; prints both sizes, images/s and the PSNR:
  python onnx_export.py --network=network-snapshot-000100.pkl --output=model-int8.onnx --quantize=int8
  # TorchScript instead of ONNX:
  python onnx_export.py --network=network-snapshot-000100.pkl --output=model.pt --format=torchscript'''


@click.command(epilog=EXAMPLES)
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', required=True, metavar='PATH|URL')
@click.option('--output', type=click.Path(dir_okay=False), required=True, help='Output file (.onnx or .pt)',
              metavar='FILE')
@click.option('--what', type=click.Choice(['G', 'mapping', 'synthesis']), default='G', show_default=True,
              help='Whole generator (z -> image), mapping (z -> ws) or synthesis (ws -> image)')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi (baked in)',
              metavar='PSI')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=int, default=None, help='Truncate only the first N ws',
              metavar='N')
@click.option('--format', 'fmt', type=click.Choice(['onnx', 'torchscript']), default='onnx', show_default=True)
@click.option('--fp16', type=bool, default=False, is_flag=False, flag_value=True, metavar='BOOL', show_default=True,
              help='Store weights and activations as float16 (inputs/outputs stay float32)')
@click.option('--quantize', type=click.Choice(['none', 'int8', 'int8-static']), default='none', show_default=True,
              help='int8: dynamic (activation ranges per run); int8-static: QDQ calibrated on random z')
@click.option('--calib-samples', type=click.IntRange(min=1), default=32, show_default=True,
              help='Random inputs for --quantize=int8-static calibration', metavar='N')
@click.option('--check', type=bool, default=False, is_flag=False, flag_value=True, metavar='BOOL', show_default=True,
              help='Compare the exported file with PyTorch on random inputs (onnxruntime or torch.jit.load)')
@click.option('--device', default='auto', show_default=True, help='Device to trace on: auto, cpu, cuda, mps',
              metavar='DEVICE')
@click.option('--allow-exec', is_flag=True, help='Execute the source code embedded in an unknown pickle (unsafe)')
def main(network_pkl, output, what, truncation_psi, truncation_cutoff, fmt, fp16, quantize, calib_samples, check,
         device, allow_exec):
    """Export a generator to ONNX or TorchScript with a dynamic batch axis."""
    check_options(fmt, fp16, quantize, what)
    if fmt == 'onnx':
        try:
            export.require_onnx()
        except export.MissingExportDependency as err:
            raise click.ClickException(str(err))
    device = cli.choose_device(device)
    cli.tune_cpu_allocator(device)
    click.echo(f'Loading networks from "{network_pkl}" on {device}...')
    G = gen_images.load_generator(network_pkl, device, allow_exec=allow_exec)
    wrapper = export.GeneratorWrapper(G, what=what, truncation_psi=truncation_psi,
                                      truncation_cutoff=truncation_cutoff).eval()
    try:  # The work folder sits beside the output, so that the final rename stays on one file system.
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        workdir = tempfile.mkdtemp(prefix='.onnx_export-', dir=os.path.dirname(os.path.abspath(output)))
    except OSError as err:
        raise click.BadParameter(f'cannot write beside {output}: {err}', param_hint='--output')
    try:
        click.echo(f'Exporting {what} ({type(G.synthesis).__module__}) as {fmt}...')
        if fmt == 'torchscript':
            final = os.path.join(workdir, 'model.pt')
            export.export_torchscript(wrapper, final, device=device)
            if check:
                module = torch.jit.load(final, map_location='cpu')
                check_against_pytorch(wrapper, lambda inputs: module(*inputs).detach().numpy(), device, 1e-4)
        else:
            final, fp32_path = write_onnx(wrapper, workdir, device, fp16, quantize, calib_samples)
            if quantize != 'none':
                report_quantization(wrapper, fp32_path, final)
            if check:
                session = export.onnx_session(final)
                check_against_pytorch(wrapper, lambda inputs: export.run_onnx(session, inputs), device,
                                      FP32_TOLERANCE if final == fp32_path else None)
        os.replace(final, output)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(f'Wrote {output} ({os.path.getsize(output) / 2**20:.2f} MiB); inputs {wrapper.input_names}, '
               'dynamic batch axis')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
