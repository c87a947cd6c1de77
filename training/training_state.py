"""The state that survives a resume: `TrainingState` (networks, optimizers, loss, counters, ADA) and the random
number generators, captured and restored as plain picklable data.

A snapshot written by the training loop carries this state under RESUME_STATE_KEY (DESIGN.md §4.5, §6); reading a
snapshot and checking that it fits a new run is training/resume.py.
"""

import copy
import random

import numpy as np
import torch

from torch_utils import misc

RESUME_STATE_KEY = 'resume_state'   # Extra snapshot key; official tools ignore it.
RESUME_STATE_VERSION = 1

#----------------------------------------------------------------------------
# Random number generators.

def capture_rng_state(device):
    """Every random number generator the loop draws from: torch (CPU and `device`'s CUDA), numpy, python.

    Returns plain picklable data (no numpy arrays) so that a safe unpickler accepts it."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=(np_name, [int(k) for k in np_keys], int(np_pos), int(np_has_gauss), float(np_gauss)))
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state, device):
    """Inverse of capture_rng_state()."""
    torch.set_rng_state(state['torch'].cpu())
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state['python']))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state['numpy']
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'].cpu(), device)

#----------------------------------------------------------------------------
# Networks, optimizers, counters.

class TrainingState:
    """Networks, optimizers, loss, counters and ADA statistics: everything a resumed run needs.

    Saving: `snapshot_data(resume_state(rank_states, ...))` -> the pickled dict (official keys + RESUME_STATE_KEY),
    with `rank_state()` gathered from every process. Loading: `load_weights()` (any snapshot, official ones
    included), then `load_resume_state()` (ours: counters, optimizers, this rank's state) for an exact resume."""

    def __init__(self, G, D, G_ema, augment_pipe, loss, phases, optimizers, training_set_kwargs):
        self.G, self.D, self.G_ema, self.augment_pipe = G, D, G_ema, augment_pipe
        self.loss = loss
        self.phases = phases
        self.optimizers = optimizers
        self.training_set_kwargs = training_set_kwargs
        self.cur_nimg = 0           # Images shown to D so far (all processes together).
        self.cur_tick = 0           # Index of the tick in progress.
        self.batch_idx = 0          # Iterations done; decides which lazy-regularisation phases run.
        self.tick_start_nimg = 0    # cur_nimg at the start of the current tick.
        self.elapsed_sec = 0.0      # Training time before this process started (for the status line).
        self.ada = None             # training.augment.AdaController tuning augment_pipe.p (--aug=ada), or None.
        self.augment_options = None # augment_options() of this run: tells a resumed run whether --aug/--p changed.

    def modules(self):
        return dict(G=self.G, D=self.D, G_ema=self.G_ema, augment_pipe=self.augment_pipe)

    def rank_state(self, rng_state):
        """What differs between processes: RNGs (as captured at the tick boundary), the loss state (pl_mean) and
        the networks' buffers (w_avg, magnitude_ema are updated from each process's own fakes)."""
        loss_state = self.loss.state_dict() if hasattr(self.loss, 'state_dict') else {}
        return dict(rng=rng_state, loss=loss_state,
                    buffers={name: {k: v.detach().cpu().clone() for k, v in module.named_buffers()}
                             for name, module in [('G', self.G), ('D', self.D)]})

    def load_rank_state(self, rank_state, device):
        """Restore rank_state(); the RNG part is returned for the caller to restore last."""
        if hasattr(self.loss, 'load_state_dict'):
            self.loss.load_state_dict(rank_state['loss'])
        for name, module in [('G', self.G), ('D', self.D)]:
            saved = rank_state['buffers'][name]
            for k, v in module.named_buffers():
                if k in saved:
                    v.copy_(saved[k].to(v.device))
        return rank_state['rng']

    def resume_state(self, rank_states, num_gpus, batch_size, elapsed_sec):
        """The RESUME_STATE_KEY entry: counters as they will be at the start of the next tick."""
        return dict(version=RESUME_STATE_VERSION, cur_nimg=self.cur_nimg, cur_tick=self.cur_tick + 1,
                    batch_idx=self.batch_idx, tick_start_nimg=self.cur_nimg, data_position=self.cur_nimg,
                    elapsed_sec=elapsed_sec, num_gpus=num_gpus, batch_size=batch_size,
                    ada=self.ada.state_dict() if self.ada is not None else None, augment=self.augment_options,
                    optimizers={name: opt.state_dict() for name, opt in self.optimizers.items()},
                    ranks=rank_states)

    def snapshot_data(self, resume_state=None):
        """Snapshot dict: modules deep-copied to CPU in eval mode without grads, plus the resume state."""
        data = dict(training_set_kwargs=dict(self.training_set_kwargs))
        for name, module in self.modules().items():
            if module is not None:
                module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
            data[name] = module
        if resume_state is not None:
            data[RESUME_STATE_KEY] = resume_state
        return data

    def load_weights(self, resume_data, names=('G', 'D', 'G_ema')):
        """Copy the named modules' parameters and buffers (the augment pipe's: its p) from a snapshot dict."""
        for name, module in self.modules().items():
            if name in names and module is not None and resume_data.get(name) is not None:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=False)

    def load_resume_state(self, resume_state, rank, num_gpus, batch_size, device):
        """Counters, optimizers and this rank's state (the ADA controller's: setup_ada()); returns the RNG state to
        restore last (None if the process layout changed, in which case the run continues but not bit-exactly)."""
        self.cur_nimg = resume_state['cur_nimg']
        self.cur_tick = resume_state['cur_tick']
        self.batch_idx = resume_state['batch_idx']
        self.tick_start_nimg = resume_state['tick_start_nimg']
        self.elapsed_sec = resume_state['elapsed_sec']
        for name, opt in self.optimizers.items():
            opt.load_state_dict(resume_state['optimizers'][name])
        same_layout = resume_state['num_gpus'] == num_gpus and resume_state['batch_size'] == batch_size
        if not same_layout:
            return None
        return self.load_rank_state(resume_state['ranks'][rank], device)

#----------------------------------------------------------------------------
