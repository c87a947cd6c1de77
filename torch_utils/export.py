"""Export a generator for deployment: a fixed-call wrapper, ONNX and TorchScript writers, ONNX Runtime helpers.

The wrapper turns G (StyleGAN1, 2, 3-T or 3-R) into a module of plain tensors in and out, with everything else
baked in: truncation, noise_mode='const', float32 and the StyleGAN3 output transform. Modulated convolutions run
in their non-fused form (styles on the activations around one shared convolution, the same maths) because the
fused form's grouped convolution has groups = batch size, which would fix the batch of the exported graph.
While exporting, the ops take their reference path (DNNLIB_OPS=ref): the graph holds standard ops only.

onnx and onnxruntime are optional (requirements-export.txt); `require_onnx()` names them when missing.
"""

import contextlib
import inspect
import os
import time
import warnings

import numpy as np
import torch

EXPORT_REQUIREMENTS = 'requirements-export.txt'
ONNX_OPSET = 17

#----------------------------------------------------------------------------

class MissingExportDependency(ImportError):
    """onnx or onnxruntime is not installed."""


def require_onnx():
    """Import and return (onnx, onnxruntime); raise MissingExportDependency naming the package and the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise MissingExportDependency(f'{err.name or "onnx/onnxruntime"} is not installed; ONNX export needs '
                                      f'`pip install -r {EXPORT_REQUIREMENTS}` (onnx, onnxruntime)') from err
    return onnx, onnxruntime

#----------------------------------------------------------------------------

def _accepts_fused_modconv(synthesis):
    """Whether some layer of the synthesis network takes fused_modconv (StyleGAN2 and 3; not StyleGAN1)."""
    return any('fused_modconv' in inspect.signature(module.forward).parameters for module in synthesis.modules())


class GeneratorWrapper(torch.nn.Module):
    """A generator (or its mapping or synthesis part) with a fixed call, for tracing.

    what='G':         forward(input [N, z_dim] (, c [N, c_dim])) -> images [N, img_channels, H, W] float32, ~[-1, 1]
    what='mapping':   forward(input [N, z_dim] (, c [N, c_dim])) -> ws [N, num_ws, w_dim]
    what='synthesis': forward(input [N, num_ws, w_dim]) -> images
    c is an input only for conditional networks (c_dim > 0); truncation applies to 'G' and 'mapping'.
    """

    def __init__(self, G, what='G', truncation_psi=1.0, truncation_cutoff=None, noise_mode='const'):
        super().__init__()
        if what not in ('G', 'mapping', 'synthesis'):
            raise ValueError(f"what={what!r}: expected 'G', 'mapping' or 'synthesis'")
        self.G = G
        self.what = what
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        self.synthesis_kwargs = dict(noise_mode=noise_mode, force_fp32=True)
        if _accepts_fused_modconv(G.synthesis):
            self.synthesis_kwargs['fused_modconv'] = False

    @property
    def input_names(self):
        conditional = self.G.c_dim > 0 and self.what != 'synthesis'
        return ['input', 'c'] if conditional else ['input']

    def example_inputs(self, batch_size, seed=0, device='cpu'):
        """Random inputs (tuple, in input_names order): z ~ N(0, 1) (or ws = mapping of such z), one-hot c."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn([batch_size, self.G.z_dim], generator=gen)
        c = torch.zeros([batch_size, self.G.c_dim])
        if self.G.c_dim > 0:
            c[torch.arange(batch_size), torch.randint(self.G.c_dim, [batch_size], generator=gen)] = 1
        z, c = z.to(device), c.to(device)
        if self.what == 'synthesis':
            with torch.no_grad():
                return (self.G.mapping(z, c, truncation_psi=self.truncation_psi,
                                       truncation_cutoff=self.truncation_cutoff),)
        return (z, c) if len(self.input_names) == 2 else (z,)

    def forward(self, x, c=None):
        if self.what == 'synthesis':
            return self.G.synthesis(x, **self.synthesis_kwargs)
        ws = self.G.mapping(x, c, truncation_psi=self.truncation_psi, truncation_cutoff=self.truncation_cutoff)
        if self.what == 'mapping':
            return ws
        return self.G.synthesis(ws, **self.synthesis_kwargs)

#----------------------------------------------------------------------------

@contextlib.contextmanager
def reference_ops():
    """Within the block, every op takes its reference path (DNNLIB_OPS=ref), so that no plugin call is traced."""
    previous = os.environ.get('DNNLIB_OPS')
    os.environ['DNNLIB_OPS'] = 'ref'
    try:
        yield
    finally:
        if previous is None:
            del os.environ['DNNLIB_OPS']
        else:
            os.environ['DNNLIB_OPS'] = previous


@contextlib.contextmanager
def _atomic_path(path):
    """Yield a temporary name beside path; on success rename it to path, on failure remove it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f'.{os.path.basename(path)}.tmp{os.getpid()}')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_onnx(wrapper, path, batch_size=2, device='cpu'):
    """Write wrapper as ONNX (opset ONNX_OPSET) to path atomically; axis 0 of every input and output is dynamic."""
    require_onnx()
    inputs = wrapper.example_inputs(batch_size, device=device)
    dynamic_axes = {name: {0: 'batch'} for name in wrapper.input_names + ['output']}
    with reference_ops(), _atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Tracer and exporter deprecation notes: the checks below are what count.
        # The TorchScript-based exporter (dynamo=False): it needs no onnxscript and works on every torch >= 2.1.
        torch.onnx.export(wrapper, inputs, tmp, input_names=wrapper.input_names, output_names=['output'],
                          dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, do_constant_folding=True,
                          dynamo=False)


def trace_torchscript(wrapper, batch_size=2, device='cpu'):
    """torch.jit.trace of wrapper (reference ops); the batch size stays free."""
    inputs = wrapper.example_inputs(batch_size, device=device)
    with reference_ops(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Tracer notes and torch.jit's deprecation notice; --check is the test.
        return torch.jit.trace(wrapper, inputs, check_trace=False)


def export_torchscript(wrapper, path, batch_size=2, device='cpu'):
    """Write the traced wrapper to path atomically (load with torch.jit.load)."""
    traced = trace_torchscript(wrapper, batch_size=batch_size, device=device)
    with _atomic_path(path) as tmp:
        traced.save(tmp)


def fold_constants(path):
    """Rewrite the ONNX file in place with onnxruntime's basic, hardware-independent graph optimisations (constant
    folding, redundant-node removal): weight-only subgraphs such as StyleGAN2's demodulation sums become
    initialisers, so the file holds each weight once (about 40% smaller) and runs faster. Only standard ops remain."""
    onnx, ort = require_onnx()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with _atomic_path(path) as tmp:
        options.optimized_model_filepath = tmp
        ort.InferenceSession(path, sess_options=options, providers=['CPUExecutionProvider'])
        model = onnx.load(tmp)
        # onnxruntime lists all its operator domains; keep the ones the graph uses, for other runtimes' sake.
        used = {node.domain for node in model.graph.node} | {''}
        kept = [entry for entry in model.opset_import if entry.domain in used]
        del model.opset_import[:]
        model.opset_import.extend(kept)
        onnx.save(model, tmp)


def quantize_int8(src, dst, mode='dynamic', calibration_inputs=()):
    """Quantise the float32 ONNX model src to int8 weights with onnxruntime's quantiser, into dst.

    mode='dynamic': weights int8 ahead of time, each activation quantised at run time from its own range
        (ConvInteger / MatMulInteger; ConvTranspose stays float). The default: StyleGAN's styles rescale every
        layer's activations per sample, and ranges measured per run follow that.
    mode='static': QDQ format (QuantizeLinear/DequantizeLinear around Conv, ConvTranspose, MatMul), per-channel
        weights, activation ranges fixed by min/max calibration on calibration_inputs (a sequence of input tuples
        in the model's input order). The format TensorRT reads for explicit int8.
    """
    require_onnx()
    from onnxruntime import quantization as q
    if mode == 'dynamic':
        q.quantize_dynamic(src, dst, weight_type=q.QuantType.QUInt8)
        return
    if mode != 'static':
        raise ValueError(f"quantize_int8: mode={mode!r}, expected 'dynamic' or 'static'")
    names = [i.name for i in onnx_session(src).get_inputs()]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{name: np.asarray(value, dtype=np.float32) for name, value in zip(names, inputs)}
                               for inputs in calibration_inputs])

        def get_next(self):
            return next(self.feeds, None)

    # Gemm is left out: onnxruntime's per-channel Gemm bias handling fails (and the mapping MLP is small).
    q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      op_types_to_quantize=['Conv', 'ConvTranspose', 'MatMul'])


def convert_onnx_fp16(src, dst):
    """Store the float32 ONNX model src with float16 weights and activations in dst; inputs and outputs stay
    float32 (onnxruntime's own converter)."""
    onnx, _ = require_onnx()
    from onnxruntime.transformers.float16 import convert_float_to_float16
    model = convert_float_to_float16(onnx.load(src), keep_io_types=True)
    with _atomic_path(dst) as tmp:
        onnx.save(model, tmp)

#----------------------------------------------------------------------------

def onnx_session(path, threads=None):
    """An onnxruntime InferenceSession for path on the CPU (threads: intra-op threads, None = onnxruntime's)."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # Errors only.
    return ort.InferenceSession(path, sess_options=options, providers=['CPUExecutionProvider'])


def run_onnx(session, inputs):
    """Run session on a tuple of tensors/arrays in the session's input order; returns the output as numpy."""
    names = [i.name for i in session.get_inputs()]
    feed = {name: np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float32)
            for name, value in zip(names, inputs)}
    return session.run(None, feed)[0]


def psnr(reference, test, peak_to_peak=2.0):
    """Peak signal-to-noise ratio in dB of test against reference (arrays of images in [-1, 1] -> peak 2)."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(test, np.float64)) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(peak_to_peak ** 2 / mse)


def images_per_second(run, batch_size, min_seconds=1.0, warmup=1):
    """Throughput of run() (which renders batch_size images): repeated for at least min_seconds after warmup."""
    for _ in range(warmup):
        run()
    count, start = 0, time.perf_counter()
    while True:
        run()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count * batch_size / elapsed

#----------------------------------------------------------------------------
