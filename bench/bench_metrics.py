"""Benchmark: metric throughput. Feature extraction (images/s through the detector) and the whole FID pipeline
(dataset PNG decode + generator + uint8 quantisation + detector + float64 statistics + Fréchet distance).

    python bench/bench_metrics.py [--device=cpu|cuda] [--num-images=256] [--resolution=64] [--generator=tiny|sg2]
                                  [--out=FILE]

Detectors: the tiny TorchScript detector of the tests always; the real Inception (inception-2015-12-05.pkl) too when
it is present locally (detector dir, cache; nothing is downloaded). Reports images/s and the extrapolated time of
fid50k_full (50k generated images + the real set once, uncached) for a 50k-image dataset. Writes JSON (default
bench/results/metrics_<device>_<generator>.json) and prints a table.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
from metrics import frechet_inception_distance, metric_utils  # noqa: E402
from tests.test_metrics_pipeline import TinyG, save_tiny_detector, write_dataset_zip  # noqa: E402

#----------------------------------------------------------------------------

def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_generator(kind, resolution, device):
    if kind == 'tiny':
        return TinyG(img_resolution=resolution).to(device)
    from training import networks_stylegan2
    return networks_stylegan2.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                                        channel_base=16384, channel_max=512).eval().requires_grad_(False).to(device)


def bench_extraction(detector, resolution, device, num_images, batch_size=64):
    """Images/s of detector(uint8 images, return_features=True) on random images."""
    images = torch.randint(0, 256, [batch_size, 3, resolution, resolution], dtype=torch.uint8, device=device)
    with torch.no_grad():
        detector(images, return_features=True)  # Warm-up.
        _sync(device)
        start = time.perf_counter()
        done = 0
        while done < num_images:
            detector(images, return_features=True)
            done += batch_size
        _sync(device)
    return done / (time.perf_counter() - start)


def bench_fid_pipeline(opts_kwargs, num_images):
    """(seconds for real stats, seconds for generated stats, fid) of compute_fid with num_images each, uncached."""
    opts = metric_utils.MetricOptions(**dict(opts_kwargs, cache=False))
    times = dict()
    original_real = metric_utils.compute_feature_stats_for_dataset
    original_fake = metric_utils.compute_feature_stats_for_generator

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            _sync(opts.device)
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            _sync(opts.device)
            times[name] = time.perf_counter() - start
            return result
        return wrapper
    metric_utils.compute_feature_stats_for_dataset = timed('real', original_real)
    metric_utils.compute_feature_stats_for_generator = timed('fake', original_fake)
    try:
        start = time.perf_counter()
        fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=num_images)
        total = time.perf_counter() - start
    finally:
        metric_utils.compute_feature_stats_for_dataset = original_real
        metric_utils.compute_feature_stats_for_generator = original_fake
    return times['real'], times['fake'], total, fid


def run_case(detector_name, detector_dir, args, device, data_zip):
    detector = metric_utils.get_feature_detector(metric_utils.INCEPTION_URL, device=device,
                                                 detector_dir=detector_dir)
    extraction = bench_extraction(detector, args.resolution, device, args.num_images)
    G = make_generator(args.generator, args.resolution, device)
    dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(data_zip),
                                     resolution=args.resolution, use_labels=False, xflip=False)
    opts_kwargs = dict(G=G, dataset_kwargs=dataset_kwargs, device=device, detector_dir=detector_dir)
    bench_fid_pipeline(opts_kwargs, min(args.num_images, 64))  # Warm-up (compilation, caches).
    real_sec, fake_sec, total_sec, fid = bench_fid_pipeline(opts_kwargs, args.num_images)
    real_rate, fake_rate = args.num_images / real_sec, args.num_images / fake_sec
    return dict(detector=detector_name, extraction_images_per_sec=extraction,
                real_pipeline_images_per_sec=real_rate, generated_pipeline_images_per_sec=fake_rate,
                fid_pipeline_total_sec=total_sec, fid_value=fid,
                fid50k_full_extrapolated_sec_for_50k_dataset=50000 / real_rate + 50000 / fake_rate)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--num-images', type=int, default=256)
    parser.add_argument('--resolution', type=int, default=64)
    parser.add_argument('--generator', choices=['tiny', 'sg2'], default='tiny')
    parser.add_argument('--detector-dir', default=None, help='Folder with the real inception-2015-12-05.pkl')
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                   f'metrics_{device.type}_{args.generator}.json')
    results = []
    with tempfile.TemporaryDirectory() as temp_dir:
        data_zip = os.path.join(temp_dir, 'data.zip')
        write_dataset_zip(data_zip, num_images=args.num_images, seed=0, resolution=args.resolution)
        results.append(run_case('tiny', save_tiny_detector(os.path.join(temp_dir, 'tiny')), args, device, data_zip))
        try:
            metric_utils.find_detector_file(metric_utils.INCEPTION_URL, args.detector_dir, download=False)
            results.append(run_case('inception-2015-12-05', args.detector_dir, args, device, data_zip))
        except metric_utils.DetectorUnavailableError:
            print('Real Inception detector not present locally: benchmarked the tiny detector only.')
    record = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else
                  platform.processor() or platform.machine(), torch=torch.__version__, threads=torch.get_num_threads(),
                  resolution=args.resolution, generator=args.generator, num_images=args.num_images, results=results)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(record, f, indent=2)
    print(f'{"detector":24s} {"extract img/s":>14s} {"real img/s":>11s} {"gen img/s":>10s} {"fid50k_full est.":>17s}')
    for row in results:
        print(f'{row["detector"]:24s} {row["extraction_images_per_sec"]:14.1f} '
              f'{row["real_pipeline_images_per_sec"]:11.1f} {row["generated_pipeline_images_per_sec"]:10.1f} '
              f'{dnnlib.util.format_time(row["fid50k_full_extrapolated_sec_for_50k_dataset"]):>17s}')
    print(f'Wrote {out}')


if __name__ == '__main__':
    main()
