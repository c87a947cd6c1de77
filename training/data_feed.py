"""The training data: the dataset, an endless loader that can start anywhere in the shuffled stream (exact resume),
and one iteration's inputs (reals, latents, fake labels) split into rounds of batch_gpu.
"""

import random

import numpy as np
import torch

import dnnlib
from torch_utils import misc

#----------------------------------------------------------------------------

class _WorkerSeeder:
    """DataLoader worker_init_fn: seeds each worker from (seed, rank, start image, worker id), so a resumed run's
    workers are seeded the same way for the same start. (Our datasets do not draw random numbers; this guards
    datasets that do.)"""

    def __init__(self, random_seed, rank, start_nimg):
        self.base = [random_seed, rank, start_nimg]

    def __call__(self, worker_id):
        seed = int(np.random.SeedSequence(self.base + [worker_id]).generate_state(1)[0])
        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)


def setup_data(training_set_kwargs, data_loader_kwargs, rank, num_gpus, batch_size, random_seed, start_nimg, device):
    """Dataset, and an endless iterator of per-process batches [batch_size // num_gpus, C, H, W] uint8 + labels
    that starts at global image number `start_nimg` of the shuffled stream (exact resume)."""
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed,
                                   start_index=start_nimg)
    loader_kwargs = dict(data_loader_kwargs)
    if device.type != 'cuda':
        loader_kwargs['pin_memory'] = False  # Pinned memory only helps copies to a GPU (and warns without one).
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None)  # Only meaningful (and only allowed) with worker processes.
        loader_kwargs.pop('persistent_workers', None)
    else:
        loader_kwargs['worker_init_fn'] = _WorkerSeeder(random_seed, rank, start_nimg)
    loader = torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=batch_size // num_gpus,
                                         **loader_kwargs)
    return training_set, iter(loader)


def fetch_batch(training_set_iterator, training_set, num_phases, batch_gpu, z_dim, device, num_chunks=1):
    """One iteration's inputs for this process (num_chunks loader batches), split into rounds of batch_gpu.

    Returns real_img [rounds][batch_gpu, C, H, W] float in [-1, 1], real_c [rounds][batch_gpu, c_dim],
    gen_z [phase][round][batch_gpu, z_dim], gen_c [phase][round][batch_gpu, c_dim]. Latents and fake labels are
    drawn for every phase, active or not, so that the random streams do not depend on the iteration number.
    """
    chunks = [next(training_set_iterator) for _ in range(num_chunks)]
    real_img, real_c = [torch.cat(parts) for parts in zip(*chunks)]
    per_gpu = real_img.shape[0]
    real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
    real_c = real_c.to(device).split(batch_gpu)
    gen_z = torch.randn([num_phases * per_gpu, z_dim], device=device)
    gen_z = [phase_z.split(batch_gpu) for phase_z in gen_z.split(per_gpu)]
    label_idx = np.random.randint(len(training_set), size=num_phases * per_gpu)
    gen_c = torch.from_numpy(np.stack([training_set.get_label(int(i)) for i in label_idx])).to(device)
    gen_c = [phase_c.split(batch_gpu) for phase_c in gen_c.split(per_gpu)]
    return real_img, real_c, gen_z, gen_c

#----------------------------------------------------------------------------
