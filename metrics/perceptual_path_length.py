"""Perceptual path length (Karras et al. 2019, "A style-based generator architecture for GANs", Sec. 4.2, Eq. 3-4).

PPL = E[d(g(lerp(w1, w2, t)), g(lerp(w1, w2, t + eps))) / eps^2] with d the LPIPS distance (squared distance of
normalised VGG16 features), t = 0 for endpoint sampling ('end') or t ~ U(0, 1) ('full'); interpolation is linear
in W and spherical in Z. Distances outside the 1st-99th percentile are discarded before the mean.
"""

import numpy as np
import torch

from . import metric_utils

#----------------------------------------------------------------------------
# Pure pieces: interpolation, image preparation, outlier-filtered mean.

def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b ([N, D]) at t ([N, 1]); unit-length result."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos_angle = (a * b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    angle = t * torch.acos(cos_angle)
    ortho = b - cos_angle * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    direction = a * torch.cos(angle) + ortho * torch.sin(angle)
    return direction / direction.norm(dim=-1, keepdim=True)


def prepare_for_lpips(img, crop, img_resolution):
    """Generator output [N, C, H, W] ~[-1, 1] -> float [0, 255], 3 channels, box-averaged by the factor
    img_resolution // 256 (the generator's resolution, also when cropped, as the reference pipeline does).

    crop: keep the central face region (rows 3/8-7/8, columns 2/8-6/8), as for the FFHQ PPL of the paper.
    """
    if crop:
        eighth = img.shape[2] // 8
        img = img[:, :, eighth * 3:eighth * 7, eighth * 2:eighth * 6]
    factor = img_resolution // 256
    if factor > 1:
        img = img.reshape(img.shape[0], img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor,
                          factor).mean([3, 5])
    img = (img + 1) * (255 / 2)
    return img.repeat([1, 3, 1, 1]) if img.shape[1] == 1 else img


def filtered_mean(distances, lo_percentile=1, hi_percentile=99):
    """Mean of the distances within [lo, hi] percentiles (lower/higher sample values, no interpolation)."""
    distances = np.asarray(distances, dtype=np.float64)
    lo = np.percentile(distances, lo_percentile, method='lower')
    hi = np.percentile(distances, hi_percentile, method='higher')
    return float(distances[(distances >= lo) & (distances <= hi)].mean())

def redraw_noise_buffers(G, generator):
    """Refill every `noise_const` buffer of G (a private copy) with standard normal noise from `generator` (CPU).

    The published PPL draws new constant noise for every batch, so the metric averages over noise inputs instead
    of measuring the one fixed noise image stored in the network."""
    for name, buf in G.named_buffers():
        if name.endswith('noise_const'):
            buf.copy_(torch.randn(buf.shape, generator=generator).to(buf.device, buf.dtype))

#----------------------------------------------------------------------------
# One batch of path-length samples.

def path_length_batch(G, vgg16, z_gen, labels, batch_size, epsilon, space, sampling, crop, device, G_kwargs):
    """[batch_size] scaled LPIPS distances d / eps^2 between images at t and t + epsilon on random paths."""
    t = torch.rand([batch_size, 1], generator=z_gen).to(device) * (1 if sampling == 'full' else 0)
    z_pair = torch.randn([batch_size * 2, G.z_dim], generator=z_gen).to(device)
    c = labels.sample(batch_size)
    c_pair = torch.cat([c, c])
    if space == 'w':
        w_start, w_end = G.mapping(z=z_pair, c=c_pair).chunk(2)
        t_ = t.unsqueeze(2)  # [N, 1, 1] over [N, num_ws, w_dim].
        w_at_t = torch.cat([w_start.lerp(w_end, t_), w_start.lerp(w_end, t_ + epsilon)])
    else:
        z_start, z_end = z_pair.chunk(2)
        z_at_t = torch.cat([slerp(z_start, z_end, t), slerp(z_start, z_end, t + epsilon)])
        w_at_t = G.mapping(z=z_at_t, c=c_pair)
    # Constant noise (redrawn per batch by the caller): both images of a pair differ only by the latent step.
    img = G.synthesis(w_at_t, noise_mode='const', force_fp32=True, **G_kwargs)
    features = vgg16(prepare_for_lpips(img, crop, G.img_resolution), resize_images=False, return_lpips=True)
    features_t0, features_t1 = features.chunk(2)
    return (features_t0 - features_t1).square().sum(dim=1) / epsilon ** 2

#----------------------------------------------------------------------------
# The metric.

def compute_ppl(opts, num_samples, epsilon, space, sampling, crop, batch_size):
    """Perceptual path length of opts.G over num_samples paths; NaN on ranks > 0."""
    if space not in ('z', 'w') or sampling not in ('full', 'end'):
        raise ValueError(f'PPL: space must be z or w and sampling full or end, got {space}, {sampling}')
    G = metric_utils.metric_generator(opts)
    opts.info.update(num_fake=num_samples, fake_resolution=int(G.img_resolution))
    metric_utils._record_detector(opts, metric_utils.VGG16_URL)
    vgg16 = metric_utils.get_feature_detector(metric_utils.VGG16_URL, device=opts.device, num_gpus=opts.num_gpus,
                                              rank=opts.rank, verbose=opts.progress, detector_dir=opts.detector_dir)
    seed = opts.random_seed * 1000003 + opts.rank
    z_gen = torch.Generator().manual_seed(seed)
    labels = metric_utils.LabelSampler(opts, G.c_dim, seed)
    # G_kwargs meant for G(z, c) (truncation) or fixed here (noise, precision) are not synthesis arguments.
    not_for_synthesis = ('truncation_psi', 'truncation_cutoff', 'noise_mode', 'force_fp32')
    synthesis_kwargs = {key: value for key, value in opts.G_kwargs.items() if key not in not_for_synthesis}
    distances = []
    num_batches = (num_samples + batch_size * opts.num_gpus - 1) // (batch_size * opts.num_gpus)
    with torch.no_grad():
        for _batch in metric_utils._progress(range(num_batches), opts, num_batches, 'path lengths'):
            redraw_noise_buffers(G, z_gen)
            batch = path_length_batch(G, vgg16, z_gen, labels, batch_size, epsilon, space, sampling, crop,
                                      opts.device, synthesis_kwargs)
            if opts.num_gpus > 1 and torch.distributed.is_initialized():
                gathered = [torch.empty_like(batch) for _ in range(opts.num_gpus)]
                torch.distributed.all_gather(gathered, batch)
                batch = torch.stack(gathered, dim=1).flatten()
            distances.append(batch.cpu().numpy())
    if opts.rank != 0:
        return float('nan')
    return filtered_mean(np.concatenate(distances)[:num_samples])
