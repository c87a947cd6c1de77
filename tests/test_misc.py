"""torch_utils.misc: shape asserts, constants, the infinite sampler, parameter copying, DDP helpers, summary."""

import itertools
import os
import tempfile
import warnings

import numpy as np
import pytest
import torch

from torch_utils import misc

#----------------------------------------------------------------------------
# assert_shape, suppress_tracer_warnings, profiled_function

def test_assert_shape_accepts_wildcards():
    misc.assert_shape(torch.zeros([2, 3, 8, 8]), [None, 3, 8, None])


def test_assert_shape_error_names_actual_and_expected_shape():
    with pytest.raises(AssertionError, match=r'dimension 1: got 4, expected 3 \(shape \[2, 4, 8, 8\], expected '
                                             r'\[None, 3, 8, 8\]\)'):
        misc.assert_shape(torch.zeros([2, 4, 8, 8]), [None, 3, 8, 8])
    with pytest.raises(AssertionError, match=r'got 2 \(shape \[2, 4\]\), expected 4'):
        misc.assert_shape(torch.zeros([2, 4]), [None, 4, 8, 8])


def test_assert_shape_works_under_tracing():
    def double(x):
        misc.assert_shape(x, [None, 3])
        return x * 2
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # torch.jit.trace is deprecated in new torch.
        warnings.simplefilter('error', torch.jit.TracerWarning)
        traced = torch.jit.trace(double, torch.ones([2, 3]))
    assert torch.equal(traced(torch.full([2, 3], 4.0)), torch.full([2, 3], 8.0))
    with pytest.raises(AssertionError), warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        torch.jit.trace(double, torch.ones([2, 5]))


def test_suppress_tracer_warnings_only_silences_tracer_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with misc.suppress_tracer_warnings():
            warnings.warn('traced', torch.jit.TracerWarning)
            warnings.warn('other', UserWarning)
        warnings.warn('traced again', torch.jit.TracerWarning)
    assert [str(w.message) for w in caught] == ['other', 'traced again']


def test_profiled_function_keeps_result_and_shows_in_profiler():
    @misc.profiled_function
    def scaled_sum(x, scale=1):
        """Docstring survives."""
        return (x * scale).sum()
    assert scaled_sum.__name__ == 'scaled_sum' and scaled_sum.__doc__ == 'Docstring survives.'
    with torch.autograd.profiler.profile() as prof:
        result = scaled_sum(torch.ones([4]), scale=3)
    assert result.item() == 12.0
    assert 'scaled_sum' in {event.name for event in prof.function_events}

#----------------------------------------------------------------------------
# constant, nan_to_num

def test_constant_is_cached_per_value_shape_dtype_and_format():
    a = misc.constant([1.0, 2.0], shape=[3, 2])
    assert a is misc.constant([1.0, 2.0], shape=[3, 2])
    assert torch.equal(a, torch.tensor([[1.0, 2.0]] * 3))
    assert misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64) is not a
    assert misc.constant([1.0, 2.5], shape=[3, 2]) is not a
    assert misc.constant(0.5).dtype == torch.get_default_dtype() and misc.constant(0.5).shape == ()
    cl = misc.constant(np.arange(24).reshape(1, 2, 3, 4), memory_format=torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and cl[0, 1, 2, 3].item() == 23


def test_constant_made_in_inference_mode_works_with_autograd():
    with torch.inference_mode():
        misc.constant([3.0, 4.0], shape=[2])
    weight = torch.ones([2], requires_grad=True)
    (weight * misc.constant([3.0, 4.0], shape=[2])).sum().backward()
    assert torch.equal(weight.grad, torch.tensor([3.0, 4.0]))


def test_nan_to_num():
    x = torch.tensor([float('nan'), float('inf'), -float('inf'), 1.5])
    assert torch.equal(misc.nan_to_num(x, nan=0.0, posinf=7.0, neginf=-7.0), torch.tensor([0.0, 7.0, -7.0, 1.5]))
    assert misc.nan_to_num(x)[1].item() == torch.finfo(torch.float32).max

#----------------------------------------------------------------------------
# InfiniteSampler

def _take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


def test_sampler_without_shuffle_cycles_in_order():
    assert _take(misc.InfiniteSampler(range(4), shuffle=False), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_sampler_is_deterministic_and_seed_dependent():
    first = _take(misc.InfiniteSampler(range(50), seed=7), 300)
    assert first == _take(misc.InfiniteSampler(range(50), seed=7), 300)
    assert first != _take(misc.InfiniteSampler(range(50), seed=8), 300)
    assert all(isinstance(idx, int) and 0 <= idx < 50 for idx in first)


def test_sampler_without_window_repeats_one_permutation():
    stream = _take(misc.InfiniteSampler(range(20), seed=1, window_size=0), 60)
    assert sorted(stream[:20]) == list(range(20)) and stream[:20] != list(range(20))
    assert stream[:20] == stream[20:40] == stream[40:]


def test_sampler_window_reshuffles_between_passes_and_covers_everything():
    num_items = 100
    stream = _take(misc.InfiniteSampler(range(num_items), seed=3, window_size=0.5), 3 * num_items)
    assert stream[:num_items] != stream[num_items:2 * num_items]
    assert set(stream) == set(range(num_items))
    counts = np.bincount(stream, minlength=num_items)
    assert counts.min() >= 1 and counts.max() <= 6  # Windowed shuffle keeps usage roughly uniform.


def test_sampler_ranks_split_the_global_stream():
    num_replicas = 3
    global_stream = _take(misc.InfiniteSampler(range(30), seed=5), 90)
    rank_streams = [_take(misc.InfiniteSampler(range(30), rank=r, num_replicas=num_replicas, seed=5), 30)
                    for r in range(num_replicas)]
    for rank, stream in enumerate(rank_streams):
        assert stream == global_stream[rank::num_replicas]
    no_window = [_take(misc.InfiniteSampler(range(30), rank=r, num_replicas=3, seed=5, window_size=0), 10)
                 for r in range(num_replicas)]
    assert sorted(sum(no_window, [])) == list(range(30))  # One pass: disjoint shards covering the dataset.


@pytest.mark.parametrize('start_index', [0, 1, 17, 64, 65, 1000])
def test_sampler_resumes_exactly(start_index):
    full = _take(misc.InfiniteSampler(range(64), seed=11), start_index + 200)
    resumed = misc.InfiniteSampler(range(64), seed=11, start_index=start_index)
    assert _take(resumed, 200) == full[start_index:]
    via_state = misc.InfiniteSampler(range(64), seed=11)
    via_state.load_state_dict(resumed.state_dict())
    assert _take(via_state, 200) == full[start_index:]


def test_sampler_resumes_exactly_per_rank_from_image_count():
    num_replicas, batch_per_rank, steps_done = 2, 4, 13
    ranks = [misc.InfiniteSampler(range(40), rank=r, num_replicas=num_replicas, seed=2) for r in range(2)]
    full = [_take(s, (steps_done + 5) * batch_per_rank) for s in ranks]
    cur_nimg = steps_done * batch_per_rank * num_replicas
    for rank in range(num_replicas):
        resumed = misc.InfiniteSampler(range(40), rank=rank, num_replicas=num_replicas, seed=2, start_index=cur_nimg)
        assert _take(resumed, 5 * batch_per_rank) == full[rank][steps_done * batch_per_rank:]


def test_sampler_state_dict_refuses_other_dataset():
    state = misc.InfiniteSampler(range(10), seed=1, start_index=5).state_dict()
    with pytest.raises(ValueError, match='num_items'):
        misc.InfiniteSampler(range(11), seed=1).load_state_dict(state)
    with pytest.raises(ValueError):
        misc.InfiniteSampler(range(10), rank=2, num_replicas=2)

#----------------------------------------------------------------------------
# Parameters and buffers

class _Net(torch.nn.Module):
    def __init__(self, width=3, extra=False):
        super().__init__()
        self.fc = torch.nn.Linear(width, width)
        self.register_buffer('w_avg', torch.zeros([width]))
        if extra:
            self.extra = torch.nn.Parameter(torch.ones([1]))

    def forward(self, x):
        return self.fc(x) + self.w_avg


def test_params_and_buffers_lists():
    net = _Net()
    assert [name for name, _ in misc.named_params_and_buffers(net)] == ['fc.weight', 'fc.bias', 'w_avg']
    assert [t.shape for t in misc.params_and_buffers(net)] == [(3, 3), (3,), (3,)]


def test_copy_params_and_buffers_copies_in_place():
    src, dst = _Net(), _Net(extra=True)
    with torch.no_grad():
        src.w_avg.fill_(0.25)
    dst_weight = dst.fc.weight
    misc.copy_params_and_buffers(src, dst)
    assert dst.fc.weight is dst_weight and dst.fc.weight.requires_grad
    assert torch.equal(dst.fc.weight, src.fc.weight) and torch.equal(dst.w_avg, torch.full([3], 0.25))
    assert torch.equal(dst.extra, torch.ones([1]))  # Not in src: untouched.
    with pytest.raises(KeyError, match='extra'):
        misc.copy_params_and_buffers(src, dst, require_all=True)
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \[3, 3\] in the source but \[4, 4\]"):
        misc.copy_params_and_buffers(src, _Net(width=4))


def test_ddp_helpers_are_no_ops_without_distributed():
    net = _Net()
    with misc.ddp_sync(net, sync=False):
        net(torch.ones([1, 3])).sum().backward()
    assert net.fc.weight.grad is not None
    misc.check_ddp_consistency(net)  # Not initialized: nothing to compare, no error.


def test_print_module_summary_returns_outputs_and_counts_parameters(capsys):
    net = torch.nn.Sequential(_Net(), torch.nn.ReLU(), _Net())
    x = torch.randn([2, 3])
    out = misc.print_module_summary(net, [x])
    assert torch.equal(out, net(x))
    table = capsys.readouterr().out
    total_row = [line.split() for line in table.splitlines() if line.startswith('Total')]
    assert total_row == [['Total', '24', '6', '-', '-']]  # 2 x (3x3 weight + 3 bias) params, 2 x 3 buffer.
    assert '0.fc' in table and '[2, 3]' in table


#----------------------------------------------------------------------------
# Two processes (gloo): ddp_sync and check_ddp_consistency.

def _ddp_worker(rank, init_file, result_dir):
    misc.init_process_group(backend='gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        net = _Net()
        misc.check_ddp_consistency(net)  # Identical on both ranks: passes.
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        x = torch.full([1, 3], float(rank + 1))
        with misc.ddp_sync(ddp, sync=False):
            ddp(x).sum().backward()
        local_grad = net.fc.weight.grad.clone()
        net.zero_grad()
        with misc.ddp_sync(ddp, sync=True):
            ddp(x).sum().backward()
        synced_grad = net.fc.weight.grad.clone()
        with torch.no_grad():
            net.w_avg[0] = float('nan')  # NaN on both ranks still counts as equal.
        misc.check_ddp_consistency(net)
        if rank == 1:
            with torch.no_grad():
                net.fc.bias.add_(1)
        try:
            misc.check_ddp_consistency(net, ignore_regex=r'.*\.w_avg')
            error = ''
        except AssertionError as err:
            error = str(err)
        torch.save(dict(local_grad=local_grad, synced_grad=synced_grad, error=error),
                   os.path.join(result_dir, f'rank{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif('fork' not in torch.multiprocessing.get_all_start_methods(), reason='needs fork start method')
def test_ddp_sync_and_consistency_check_with_two_gloo_processes():
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children reuse this process's imports (spawn would re-import torch, ~10x slower).
        torch.multiprocessing.start_processes(_ddp_worker, args=(os.path.join(tmp, 'init'), tmp), nprocs=2,
                                              start_method='fork')
        results = [torch.load(os.path.join(tmp, f'rank{r}.pt')) for r in range(2)]
    # d(sum(W x + b))/dW = x per output row; x is all (rank + 1). Without sync each rank keeps its own.
    assert torch.equal(results[0]['local_grad'], torch.full([3, 3], 1.0))
    assert torch.equal(results[1]['local_grad'], torch.full([3, 3], 2.0))
    for result in results:  # With sync DDP averages: (1 + 2) / 2.
        assert torch.equal(result['synced_grad'], torch.full([3, 3], 1.5))
    assert results[0]['error'] == ''
    assert '_Net.fc.bias differs from rank 0 on rank 1 (max abs difference 1)' in results[1]['error']
