"""Small PyTorch helpers: shape checks, cached constants, the infinite sampler, parameter copying,
DDP helpers and a module summary table.
"""

import contextlib
import functools
import re
import warnings

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------
# Cached constant tensors. The cache is deliberate global state: layers ask for the same small
# constants (filters, gains) on every forward pass.

_constant_cache = dict()


def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """A tensor holding `value` (broadcast to `shape`), created once per distinct request and then reused.

    Args:
        value:         anything `np.asarray` accepts.
        shape:         target shape to broadcast to, or None to keep the value's shape.
        dtype:         torch dtype; None = torch's default float dtype.
        device:        torch device; None = CPU.
        memory_format: e.g. torch.channels_last; None = contiguous.
    The returned tensor is shared between callers: treat it as read-only.
    """
    value = np.asarray(value)
    shape = tuple(shape) if shape is not None else None
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device('cpu')
    memory_format = memory_format if memory_format is not None else torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        # Built outside inference mode so that the cached tensor can also be used in autograd later.
        with torch.inference_mode(False):
            tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
            if shape is not None:
                tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape, dtype=dtype, device=device))
            tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

#----------------------------------------------------------------------------

def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):  # noqa: A002 (torch's argument name)
    """Replace NaN by `nan` and +-inf by `posinf`/`neginf` (default: the largest finite values of the dtype)."""
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)

#----------------------------------------------------------------------------
# Tracing-friendly shape checks.

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence `torch.jit.TracerWarning` inside the block (e.g. for shape asserts under tracing)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        yield


def symbolic_assert(condition, message):
    """`assert` that `torch.jit.trace` / `torch.fx` record in the graph instead of evaluating once."""
    torch._assert(condition, message)


def assert_shape(tensor, ref_shape):
    """Raise AssertionError unless `tensor.shape` matches `ref_shape`; None entries match any size.

    Entries of `ref_shape` may be ints, None or 0-dim tensors (traced sizes). Under `torch.jit.trace`
    the comparison is recorded as a graph assert instead of being evaluated once.
    """
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim} (shape {list(tensor.shape)}), '
                             f'expected {len(ref_shape)} (shape {list(ref_shape)})')
    for dim, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor) or isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                symbolic_assert(torch.equal(torch.as_tensor(size), torch.as_tensor(ref_size)),
                                f'Wrong size for dimension {dim}: expected {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {dim}: got {size}, expected {ref_size} '
                                 f'(shape {list(tensor.shape)}, expected {list(ref_shape)})')

#----------------------------------------------------------------------------

def profiled_function(fn):
    """Decorator: the call shows up in the torch profiler as a range named after the function."""
    @functools.wraps(fn)
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    return decorator

#----------------------------------------------------------------------------
# Infinite sampler with a windowed shuffle (StyleGAN2-ADA / StyleGAN3 training data order).

class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of dataset indices, identical on every run with the same arguments.

    The dataset order is shuffled once with `seed`; then, after each draw at position i of the order, the
    drawn item is swapped with a random item among the `window_size * len(dataset)` positions just before i,
    so successive passes are reshuffled gradually. Draw number k (k = 0, 1, 2, ...) of the global stream goes
    to replica `k % num_replicas`, so the replicas together consume exactly the single-process stream.

    Exact resume: the state after k global draws depends only on (dataset size, seed, window, k). Construct
    with `start_index=k`, or call `load_state_dict({'start_index': k})` before iterating, to continue as if
    the stream had never stopped. In a training loop, k is the number of images consumed by all replicas
    together (`cur_nimg`), not a position read back from the sampler: a DataLoader prefetches ahead.
    `state_dict()` reports the start index of the next iterator and the current draw position.

    Args:
        dataset:      anything with `len()`.
        rank:         index of this replica, 0 <= rank < num_replicas.
        num_replicas: number of processes that share the stream.
        shuffle:      False yields 0, 1, 2, ... cyclically.
        seed:         seed of the shuffle.
        window_size:  reshuffle window as a fraction of the dataset size (0 disables reshuffling).
        start_index:  global draw number to start at (see Exact resume).
    """

    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5, start_index=0):
        num_items = len(dataset)
        if num_items <= 0:
            raise ValueError('InfiniteSampler: the dataset is empty')
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, '
                             f'num_replicas={num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size must be in [0, 1], got {window_size}')
        super().__init__()
        self.num_items = num_items
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start_index = int(start_index)
        self.position = self.start_index  # Global draw number of the next draw of the latest iterator.

    def _initial_state(self):
        """(order as a list, RandomState or None, window length) before draw 0."""
        order = np.arange(self.num_items)
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(self.num_items * self.window_size))
        return order.tolist(), rnd, window

    def _fast_forward(self, order, rnd, window, num_draws):
        """Apply the reshuffle swaps of `num_draws` draws without yielding (same random stream)."""
        if window < 2:
            return
        chunk = 1 << 16
        for chunk_start in range(0, num_draws, chunk):
            offsets = rnd.randint(window, size=min(chunk, num_draws - chunk_start)).tolist()
            for local_idx, offset in enumerate(offsets):
                i = (chunk_start + local_idx) % self.num_items
                j = (i - offset) % self.num_items
                order[i], order[j] = order[j], order[i]

    def __iter__(self):
        order, rnd, window = self._initial_state()
        self._fast_forward(order, rnd, window, self.start_index)
        draw = self.start_index
        self.position = draw
        while True:
            i = draw % self.num_items
            if draw % self.num_replicas == self.rank:
                yield order[i]
            if window >= 2:
                j = (i - rnd.randint(window)) % self.num_items
                order[i], order[j] = order[j], order[i]
            draw += 1
            self.position = draw

    def state_dict(self):
        """Plain-data description of the sampler; `start_index` is where the next iterator begins."""
        return dict(num_items=self.num_items, seed=self.seed, window_size=self.window_size, shuffle=self.shuffle,
                    num_replicas=self.num_replicas, start_index=self.start_index, position=self.position)

    def load_state_dict(self, state):
        """Make the next iterator start at global draw `state['start_index']` (checks dataset size and seed)."""
        for name in ('num_items', 'seed', 'window_size', 'shuffle'):
            if name in state and state[name] != getattr(self, name):
                raise ValueError(f'InfiniteSampler: cannot resume: {name} was {state[name]!r}, now '
                                 f'{getattr(self, name)!r} (same dataset and seed are needed to resume exactly)')
        self.start_index = int(state['start_index'])
        self.position = self.start_index

#----------------------------------------------------------------------------
# Parameters and buffers.

def params_and_buffers(module):
    """All parameters, then all buffers, of `module` (list of tensors)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module):
    """All (name, tensor) pairs of parameters, then buffers, of `module`."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy every parameter/buffer of `dst_module` that has a same-named tensor in `src_module`.

    Names missing from `src_module` are left untouched unless `require_all`, which makes them an error.
    Values are copied in place, so optimizers and EMAs holding `dst_module`'s tensors stay valid.
    """
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f'copy_params_and_buffers: {type(src_module).__name__} has no parameter or buffer '
                               f'named {name!r} (require_all=True)')
            continue
        src_tensor = src_tensors[name]
        if src_tensor.shape != tensor.shape:
            raise ValueError(f'copy_params_and_buffers: {name!r} has shape {list(src_tensor.shape)} in the source '
                             f'but {list(tensor.shape)} in the destination')
        tensor.copy_(src_tensor.detach())

#----------------------------------------------------------------------------
# Distributed data parallel.

def init_process_group(**kwargs):
    """torch.distributed.init_process_group(**kwargs), with torch._dynamo imported first.

    Why: importing torch._dynamo (every torch.optim optimizer's constructor does) after the group exists leaves
    references to it that destroy_process_group() does not drop, so gloo's worker threads outlive it; one of them
    then freed a finished all-reduce during interpreter shutdown and aborted the process ('terminate called without
    an active exception', one run in three on 2 cores). Imported first, dynamo holds nothing of the group."""
    try:
        import torch._dynamo  # noqa: F401  (see the docstring)
    except Exception:  # noqa: BLE001  A build without a working dynamo: nothing will import it later either.
        pass
    torch.distributed.init_process_group(**kwargs)


@contextlib.contextmanager
def ddp_sync(module, sync):
    """Within the block, a DistributedDataParallel `module` all-reduces gradients only if `sync`."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'ddp_sync expects a torch.nn.Module, got {type(module).__name__}')
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module, ignore_regex=None):
    """Raise AssertionError if any parameter/buffer differs from rank 0's copy (NaN equals NaN).

    Names are prefixed with the module's class name (`Generator.mapping.fc0.weight`) before matching
    `ignore_regex` (full match). Does nothing unless torch.distributed is initialized with several ranks.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() == 1:
        return
    for name, tensor in named_params_and_buffers(module):
        full_name = f'{type(module).__name__}.{name}'
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        local = tensor.detach()
        reference = local.clone()
        torch.distributed.broadcast(tensor=reference, src=0)
        same = local == reference
        if local.is_floating_point() or local.is_complex():
            same |= torch.isnan(local) & torch.isnan(reference)
        if not bool(same.all()):
            max_diff = (local.double() - reference.double()).abs().nan_to_num(nan=float('inf')).max().item()
            raise AssertionError(f'check_ddp_consistency: {full_name} differs from rank 0 on rank '
                                 f'{torch.distributed.get_rank()} (max abs difference {max_diff:g})')

#----------------------------------------------------------------------------
# Module summary table.

def _collect_module_outputs(module, inputs, max_nesting):
    """Run `module(*inputs)` recording, per submodule call up to `max_nesting` deep, its tensor outputs."""
    entries = []
    depth = [0]

    def pre_hook(_mod, _inputs):
        depth[0] += 1

    def post_hook(mod, _inputs, outputs):
        depth[0] -= 1
        if depth[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            entries.append(dnnlib.EasyDict(mod=mod, outputs=[t for t in outputs if isinstance(t, torch.Tensor)]))

    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, entries


def _format_table(rows):
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    return '\n'.join('  '.join(cell + ' ' * (width - len(cell)) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    """Run `module(*inputs)`, print a table of submodules (parameters, buffers, output shapes, dtypes),
    and return the module's outputs. A debugging aid for the command line, so it prints.

    Each parameter, buffer and output tensor is counted once, at the innermost submodule that owns it;
    `skip_redundant` hides rows that add nothing new. `max_nesting` limits the depth of rows shown.
    """
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise TypeError('print_module_summary expects an eager torch.nn.Module')
    if not isinstance(inputs, (tuple, list)):
        raise TypeError('print_module_summary: inputs must be a tuple or list of positional arguments')
    outputs, entries = _collect_module_outputs(module, inputs, max_nesting)

    seen = set()  # ids of tensors already attributed to an (inner) submodule.
    for entry in entries:  # Hooks fire innermost first.
        entry.params = [t for t in entry.mod.parameters() if id(t) not in seen]
        entry.buffers = [t for t in entry.mod.buffers() if id(t) not in seen]
        entry.new_outputs = [t for t in entry.outputs if id(t) not in seen]
        seen |= {id(t) for t in entry.params + entry.buffers + entry.new_outputs}
    if skip_redundant:
        entries = [e for e in entries if e.params or e.buffers or e.new_outputs]

    names = {mod: name for name, mod in module.named_modules()}
    names[module] = '<top-level>'
    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype'], ['---'] * 5]
    for entry in entries:
        shapes = [str(list(t.shape)) for t in entry.outputs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in entry.outputs] or ['-']
        num_params = sum(t.numel() for t in entry.params)
        num_buffers = sum(t.numel() for t in entry.buffers)
        rows.append([names.get(entry.mod, '?') + (':0' if len(entry.outputs) >= 2 else ''),
                     str(num_params) if num_params else '-', str(num_buffers) if num_buffers else '-',
                     shapes[0], dtypes[0]])
        for idx in range(1, len(entry.outputs)):
            rows.append([f'{names.get(entry.mod, "?")}:{idx}', '-', '-', shapes[idx], dtypes[idx]])
    total_params = sum(t.numel() for entry in entries for t in entry.params)
    total_buffers = sum(t.numel() for entry in entries for t in entry.buffers)
    rows += [['---'] * 5, ['Total', str(total_params), str(total_buffers), '-', '-']]
    print()
    print(_format_table(rows))
    print()
    return outputs

#----------------------------------------------------------------------------
