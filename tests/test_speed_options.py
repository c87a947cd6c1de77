"""train.py's speed options: --threads, --precision, --compile, --channels-last, --grad-clip (training/accel.py),
from the option builder to a tiny CPU run, and agreement with float32 where the maths allows."""

import copy

import pytest
import torch

import train
from training import accel
from training import networks_stylegan2
from training_helpers import read_stats, run_quietly, tiny_options, write_shapes_folder

INFO = dict(name='shapes16', resolution=16, size=24, has_labels=False)


def build(**opts):
    return train.build_training_options(INFO, cfg='stylegan2', data='d.zip', batch=4, gamma=1, **opts)


def test_options_reach_the_loop_only_when_used():
    plain = build()
    assert plain['num_threads'] == 0
    assert not {'precision', 'compile', 'channels_last', 'grad_clip'} & set(plain)
    used = build(precision='bf16', compile=True, channels_last=True, grad_clip=5.0, threads=3)
    assert used['precision'] == 'bf16' and used['compile'] and used['channels_last'] and used['grad_clip'] == 5.0
    assert used['num_threads'] == 3


def test_precision_sets_the_network_kwargs_like_the_official_rule():
    assert 'num_fp16_res' not in build()['G_kwargs']                      # fp16: the official default rule.
    assert build(precision='fp32')['G_kwargs']['num_fp16_res'] == 0        # = --fp32=1.
    assert build(precision='fp32')['D_kwargs']['conv_clamp'] is None
    bf16 = build(precision='bf16')
    assert 'num_fp16_res' not in bf16['G_kwargs'] and bf16['G_kwargs']['conv_clamp'] is None
    with pytest.raises(train.UsageError, match='--fp32=1 contradicts --precision=bf16'):
        build(precision='bf16', fp32=True)


def _generator(**kwargs):
    torch.manual_seed(0)
    return networks_stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                                        channel_base=256, channel_max=32, mapping_kwargs=dict(num_layers=2),
                                        num_fp16_res=4, conv_clamp=None, **kwargs)


def test_bf16_layers_run_in_bfloat16_on_cpu_and_match_fp32_within_3_percent():
    G = _generator()
    G_bf16 = copy.deepcopy(G)
    accel.Accelerator(precision='bf16').prepare(G_bf16, torch.nn.Module(), None, None)
    dtypes = []
    hook = G_bf16.synthesis.b16.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    z = torch.randn([4, 32], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img32, img16 = G(z, None, noise_mode='const'), G_bf16(z, None, noise_mode='const')
    hook.remove()
    assert dtypes == [torch.bfloat16] and img16.dtype == torch.float32
    # bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 per op); a few layers stay within 3% of the range.
    assert float((img16 - img32).abs().max()) <= 0.03 * float(img32.abs().max())
    accel.Accelerator().prepare(G_bf16, torch.nn.Module(), None, None)   # Back to the official float16 rule.
    assert not any('mixed_precision' in vars(m) for m in G_bf16.modules())


def test_grad_clip_counts_clips_and_a_huge_norm_changes_nothing():
    module = torch.nn.Linear(3, 2)
    module.weight.grad = torch.full_like(module.weight, 3.0)
    module.bias.grad = torch.zeros_like(module.bias)
    grads = module.weight.grad.clone()
    accel.Accelerator().clip_gradients('Gmain', module)                    # Off by default.
    assert torch.equal(module.weight.grad, grads)
    accel.Accelerator(grad_clip=1e9).clip_gradients('Gmain', module)
    assert torch.equal(module.weight.grad, grads)
    accel.Accelerator(grad_clip=1.0).clip_gradients('Gmain', module)
    assert abs(float(module.weight.grad.norm()) - 1.0) < 1e-5
    with pytest.raises(ValueError, match='grad_clip'):
        accel.Accelerator(grad_clip=0)


def test_tiny_run_with_speed_options_matches_the_plain_run_and_reports_clipping_and_cpu(tmp_path):
    """channels_last and a never-reached clip norm change nothing beyond float rounding; a tiny norm clips every
    step and says so in the stats; the status line shows the CPU share and the thread count."""
    (tmp_path / 'data').mkdir()
    data = write_shapes_folder(tmp_path / 'data')
    runs = {}
    for name, extra in [('plain', {}), ('cl', dict(channels_last=True, grad_clip=1e9, num_threads=1)),
                        ('clip', dict(grad_clip=1e-4, num_threads=1))]:
        options = tiny_options(data, tmp_path / name, total_ticks=2, network_snapshot_ticks=None,
                               image_snapshot_ticks=None, **extra)
        runs[name] = run_quietly(**options) + (options['run_dir'],)
    params = {name: torch.cat([p.flatten() for p in run[0].G.parameters()]) for name, run in runs.items()}
    assert float((params['cl'] - params['plain']).abs().max()) <= 1e-4 * float(params['plain'].abs().max())
    assert float((params['clip'] - params['plain']).abs().max()) > 1e-3
    stats = read_stats(runs['clip'][2])[-1]
    assert stats['Progress/grad_clipped/Gmain']['mean'] == 1.0 and stats['Progress/grad_clipped/Dmain']['mean'] == 1.0
    status = [line for line in runs['cl'][1].splitlines() if line.startswith('tick ')]
    assert status and all(' cpu ' in line and ' threads 1' in line for line in status)


def test_tiny_run_with_compile_uses_compiled_main_phases_and_matches_eager(tmp_path, monkeypatch):
    """--compile through TorchDynamo with the 'eager' backend (the inductor's C++ build takes many minutes on a
    CPU; the backend does not change which modules are compiled): the main phases run compiled modules, the
    twice-differentiated phases the eager ones, and the run equals the eager run to float rounding."""
    real_compile = torch.compile
    compiled = []
    def compile_eager(module, **kwargs):
        compiled.append(type(module).__name__)
        return real_compile(module, backend='eager', **kwargs)
    monkeypatch.setattr(torch, 'compile', compile_eager)
    (tmp_path / 'data').mkdir()
    data = write_shapes_folder(tmp_path / 'data')
    finals = []
    for name, extra in [('eager', {}), ('compiled', dict(compile=True))]:
        options = tiny_options(data, tmp_path / name, total_ticks=1, network_snapshot_ticks=None,
                               image_snapshot_ticks=None, num_threads=1, **extra)
        finals.append(torch.cat([p.flatten() for p in run_quietly(**options)[0].G.parameters()]))
    assert sorted(compiled) == ['Discriminator', 'MappingNetwork', 'SynthesisNetwork']
    assert float((finals[1] - finals[0]).abs().max()) <= 1e-4 * float(finals[0].abs().max())
