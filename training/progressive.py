"""Progressive growing schedule (Karras et al. 2018 "Progressive Growing of GANs", Sec. 3 and App. A.1; the
StyleGAN1 release trains the same way): which level of detail (lod) the networks run at after cur_nimg images.

Training starts at `start_resolution` (8x8 in the StyleGAN paper). Each stage first trains its resolution for
`lod_training_kimg`, then fades the next resolution in over `lod_transition_kimg` (alpha from 0 to 1) -- 600 + 600
kimg in both papers. lod counts halvings below the full resolution: log2(img_resolution / start_resolution) at the
start, 0 once the full resolution has faded in. lod is a pure function of cur_nimg, so a resumed run continues on the
same schedule, and a snapshot's G carries its lod (networks_stylegan1: `synthesis.lod` buffer).

A minibatch per resolution (`batch_per_resolution`, e.g. the StyleGAN release's 8-GPU table {4: 512, 8: 256,
16: 128, 32: 64, 64: 32}) changes the images per iteration; the image counter counts them, so the schedule and the
data position stay consistent for exact resume.

`ProgressiveSchedule.apply()` sets the lod of G and D and makes the reals match what G can draw at that lod
(ProGAN App. A.1: reals average-pooled to the current resolution and nearest-upsampled back, blended by the same
fade weight while a resolution fades in).
"""

import numpy as np
import torch

from torch_utils import training_stats

PAPER_LOD_KIMG = 600    # ProGAN App. A.1 / StyleGAN: 600 kimg training + 600 kimg fade-in per resolution.

#----------------------------------------------------------------------------

def lod_at(cur_nimg, img_resolution, start_resolution=8, lod_training_kimg=PAPER_LOD_KIMG,
           lod_transition_kimg=PAPER_LOD_KIMG):
    """Level of detail (float >= 0) after cur_nimg images: log2(img_resolution / start_resolution) minus the number
    of resolutions faded in so far (fractional during a fade-in)."""
    max_lod = np.log2(img_resolution) - np.log2(start_resolution)
    stage_kimg = lod_training_kimg + lod_transition_kimg
    kimg = cur_nimg / 1000
    stage = int(kimg // stage_kimg) if stage_kimg > 0 else int(max_lod)
    lod = max_lod - stage
    if lod_transition_kimg > 0:
        lod -= max(kimg - stage * stage_kimg - lod_training_kimg, 0) / lod_transition_kimg
    return float(max(lod, 0.0))


def alpha_at(lod):
    """Fade-in progress of the resolution being added: 0 at the start of a fade, 1 when it ends (or no fade)."""
    frac = lod - np.floor(lod)
    return float(1 - frac) if frac > 0 else 1.0


def resolution_at(lod, img_resolution):
    """The finest resolution present at `lod` (the one fading in, during a fade)."""
    return int(img_resolution // 2 ** int(np.floor(lod)))


def reals_at_lod(img, lod):
    """img: [N, C, H, W] full-resolution reals -> what D should see at `lod`: pooled to the resolution of lod's
    coarser level and upsampled back (nearest), blended with the finer level by lod's fractional part."""
    if lod <= 0:
        return img
    coarse_factor = 2 ** int(np.ceil(lod))
    fine_factor = 2 ** int(np.floor(lod))
    coarse = _pool_and_upsample(img, coarse_factor)
    if coarse_factor == fine_factor:
        return coarse
    fine = _pool_and_upsample(img, fine_factor)
    return torch.lerp(fine, coarse, float(lod - np.floor(lod)))


def _pool_and_upsample(img, factor):
    if factor == 1:
        return img
    img = torch.nn.functional.avg_pool2d(img, factor)
    return img.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)

#----------------------------------------------------------------------------

class ProgressiveSchedule:
    """The schedule of one run (see lod_at); training_loop calls apply() before each iteration."""

    def __init__(self, img_resolution, start_resolution=8, lod_training_kimg=PAPER_LOD_KIMG,
                 lod_transition_kimg=PAPER_LOD_KIMG, batch_per_resolution=None):
        if start_resolution < 4 or start_resolution > img_resolution or start_resolution & (start_resolution - 1):
            raise ValueError(f'progressive growing: start_resolution={start_resolution} must be a power of two '
                             f'between 4 and the dataset resolution {img_resolution}')
        self.img_resolution = img_resolution
        self.start_resolution = start_resolution
        self.lod_training_kimg = lod_training_kimg
        self.lod_transition_kimg = lod_transition_kimg
        # {resolution: images per iteration}; JSON (training_options.json) turns the keys into strings.
        self.batch_per_resolution = {int(res): int(b) for res, b in (batch_per_resolution or {}).items()}

    def lod(self, cur_nimg):
        return lod_at(cur_nimg, self.img_resolution, self.start_resolution, self.lod_training_kimg,
                      self.lod_transition_kimg)

    def batch_size(self, cur_nimg, default):
        """Images in the next iteration: the table's entry for the resolution being trained or faded in (ProGAN
        App. A.1 and the StyleGAN release shrink the minibatch as the resolution grows), else `default`."""
        return self.batch_per_resolution.get(resolution_at(self.lod(cur_nimg), self.img_resolution), default)

    @torch.no_grad()
    def apply(self, cur_nimg, networks, real_img):
        """Set `lod` on every network that has one (G.synthesis, D; G_ema follows G's buffers) and return the reals
        [rounds][N, C, H, W] as seen at that lod. Reports Progress/lod."""
        lod = self.lod(cur_nimg)
        for net in networks:
            for module in [net, getattr(net, 'synthesis', None)]:
                if module is not None and isinstance(getattr(module, 'lod', None), torch.Tensor):
                    module.lod.fill_(lod)
        training_stats.report0('Progress/lod', lod)
        return [reals_at_lod(img, lod) for img in real_img]

#----------------------------------------------------------------------------
