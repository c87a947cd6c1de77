"""CycleGAN (issue 19): networks, losses, pool, lr schedule, unpaired datasets, snapshots, exact resume, CLIs."""

import contextlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dataset_tool
import train_cyclegan
import translate
from torch_utils import safe_pickle
from training import cyclegan_loop
from training import cyclegan_loss
from training import cyclegan_snapshot
from training import networks_cyclegan
from training import shapes2colors
from training import unpaired_dataset

#----------------------------------------------------------------------------
# Networks.

@pytest.mark.parametrize('size, expected', [(32, 2), (64, 6), (128, 14)])
def test_patchgan_map_size_for_32_64_128(size, expected):
    D = networks_cyclegan.PatchDiscriminator(img_channels=3, ndf=4)
    logits = D(torch.randn([2, 3, size, size]))
    assert list(logits.shape) == [2, 1, expected, expected]
    assert networks_cyclegan.patch_map_size(size) == expected


def test_patchgan_sees_70x70_patches():
    assert networks_cyclegan.receptive_field() == 70


@pytest.mark.parametrize('height, width', [(32, 32), (32, 48), (36, 20)])
def test_generator_keeps_image_shape_and_range(height, width):
    G = networks_cyclegan.ResnetGenerator(img_channels=3, ngf=4, num_blocks=2)
    out = G(torch.randn([2, 3, height, width]))
    assert list(out.shape) == [2, 3, height, width]
    assert out.abs().max() < 1


def test_generator_layout_follows_the_paper():
    G = networks_cyclegan.ResnetGenerator(img_channels=3, ngf=64, num_blocks=9)
    shapes = {name: list(p.shape) for name, p in G.named_parameters()}
    assert shapes['c7s1_in.weight'] == [64, 3, 7, 7]
    assert shapes['d0.weight'] == [128, 64, 3, 3] and shapes['d1.weight'] == [256, 128, 3, 3]
    assert shapes['r8.conv1.weight'] == [256, 256, 3, 3] and 'r9.conv0.weight' not in shapes
    assert shapes['u0.weight'] == [256, 128, 3, 3]  # Transposed conv: [in, out, k, k].
    assert shapes['c7s1_out.weight'] == [3, 64, 7, 7]
    assert networks_cyclegan.default_num_blocks(128) == 6 and networks_cyclegan.default_num_blocks(256) == 9


def test_generator_rejects_size_not_multiple_of_4():
    G = networks_cyclegan.ResnetGenerator(img_channels=3, ngf=4, num_blocks=1)
    with pytest.raises(ValueError, match='multiple of 4'):
        G(torch.zeros([1, 3, 32, 30]))

#----------------------------------------------------------------------------
# Losses, pool, schedule.

def test_lsgan_losses_match_formulas():
    real = torch.tensor([[0.5, 1.5], [1.0, -1.0]])
    fake = torch.tensor([[0.2, -0.4], [1.0, 0.0]])
    # D: 0.5 * (mean((real - 1)^2) + mean(fake^2)) = 0.5 * ((0.25 + 0.25 + 0 + 4) / 4 + (0.04 + 0.16 + 1 + 0) / 4)
    assert float(cyclegan_loss.lsgan_discriminator_loss(real, fake)) == pytest.approx(0.5 * (4.5 / 4 + 1.2 / 4))
    # G: mean((fake - 1)^2) = (0.64 + 1.96 + 0 + 1) / 4
    assert float(cyclegan_loss.lsgan_generator_loss(fake)) == pytest.approx(3.6 / 4)


def test_cycle_and_identity_losses_are_mean_l1():
    rng = np.random.RandomState(0)
    x, y = rng.randn(2, 3, 4, 4).astype(np.float32), rng.randn(2, 3, 4, 4).astype(np.float32)
    expected = np.abs(x - y).sum() / x.size
    assert float(cyclegan_loss.cycle_loss(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(expected)
    assert float(cyclegan_loss.identity_loss(torch.from_numpy(y), torch.from_numpy(x))) == pytest.approx(expected)


def test_generator_objective_weights_are_lambda_and_half_lambda():
    total = cyclegan_loss.generator_objective(adv_ab=1.0, adv_ba=2.0, cyc_a=0.1, cyc_b=0.2, idt_a=0.3, idt_b=0.5)
    assert total == pytest.approx(1 + 2 + 10 * (0.1 + 0.2) + 5 * (0.3 + 0.5))


def test_image_pool_fills_then_swaps_with_probability_half():
    pool = cyclegan_loss.ImagePool(size=4, seed=1)
    first = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # Filling: every image returned as is and stored.
    stored_ids = set(range(4))
    from_pool = 0
    num_queries = 2000
    for step in range(num_queries):
        new_id = 100 + step
        out = int(pool.query(torch.full([1, 1, 1, 1], float(new_id)))[0, 0, 0, 0])
        if out != new_id:
            assert out in stored_ids  # A returned stored image was stored earlier and is replaced.
            stored_ids.remove(out)
            stored_ids.add(new_id)
            from_pool += 1
        assert {int(v) for v in torch.stack(pool.images).flatten()} == stored_ids
    # Binomial(2000, 0.5): std 22; 5 sigma.
    assert abs(from_pool - num_queries / 2) < 5 * np.sqrt(num_queries) / 2


def test_image_pool_state_round_trip_continues_identically():
    pool = cyclegan_loss.ImagePool(size=3, seed=5)
    for value in range(6):
        pool.query(torch.full([1, 1, 2, 2], float(value)))
    copy = cyclegan_loss.ImagePool(size=0, seed=99)
    copy.load_state_dict(pool.state_dict())
    for value in range(6, 20):
        batch = torch.full([2, 1, 2, 2], float(value))
        assert torch.equal(pool.query(batch), copy.query(batch))


@pytest.mark.parametrize('epoch, factor', [(0, 1.0), (99, 1.0), (100, 1.0), (125, 0.75), (150, 0.5), (190, 0.1),
                                           (200, 0.0), (250, 0.0)])
def test_lr_constant_100_epochs_then_linear_to_zero_over_100(epoch, factor):
    assert cyclegan_loss.linear_decay_factor(epoch, constant=100, decay=100) == pytest.approx(factor)

def test_generator_step_reports_the_paper_objective_of_its_networks():
    from torch_utils import training_stats
    nets = {key: module.train() for key, module in _tiny_nets().items()}
    torch.manual_seed(1)
    real_A, real_B = torch.rand([2, 3, 32, 32]) * 2 - 1, torch.rand([2, 3, 32, 32]) * 2 - 1
    with torch.no_grad():  # Independently: G_AB maps A to B and should leave B alone; G_BA the reverse.
        fake_B, fake_A = nets['G_AB'](real_A), nets['G_BA'](real_B)
        expected = {
            'adv_AB': ((nets['D_B'](fake_B) - 1) ** 2).mean(), 'adv_BA': ((nets['D_A'](fake_A) - 1) ** 2).mean(),
            'cycle_A': (nets['G_BA'](fake_B) - real_A).abs().mean(),
            'cycle_B': (nets['G_AB'](fake_A) - real_B).abs().mean(),
            'identity_A': (nets['G_BA'](real_A) - real_A).abs().mean(),
            'identity_B': (nets['G_AB'](real_B) - real_B).abs().mean()}
    expected['total'] = (expected['adv_AB'] + expected['adv_BA'] + 10 * (expected['cycle_A'] + expected['cycle_B'])
                         + 5 * (expected['identity_A'] + expected['identity_B']))
    G_opt, D_opt = cyclegan_loop.build_optimizers(nets, lr=0.0002, betas=(0.5, 0.999))
    state = cyclegan_loop.CycleGANState(nets, G_opt, D_opt, {}, {})
    collector = training_stats.Collector(regex='Loss/G/.*')
    before = nets['G_AB'].d0.weight.clone()
    cyclegan_loop.generators_step(state, real_A, real_B, num_gpus=1, lambda_cycle=10, identity_ratio=0.5)
    collector.update()
    for name, value in expected.items():
        assert collector.mean(f'Loss/G/{name}') == pytest.approx(float(value), rel=1e-5), name
    assert not torch.equal(before, nets['G_AB'].d0.weight)  # Adam stepped G.
    assert all(p.grad is None for p in nets['D_A'].parameters())  # D is untouched by G's step.

def test_discriminator_step_judges_reals_and_pooled_fakes():
    from torch_utils import training_stats
    nets = {key: module.train().requires_grad_(False) for key, module in _tiny_nets().items()}
    torch.manual_seed(2)
    real_A, real_B, fake_A, fake_B = (torch.rand([2, 3, 32, 32]) * 2 - 1 for _ in range(4))
    with torch.no_grad():  # The pools are filling, so they hand the fakes through: 0.5 (E(D(r)-1)^2 + E D(f)^2).
        expected = {'D_A': 0.5 * (((nets['D_A'](real_A) - 1) ** 2).mean() + (nets['D_A'](fake_A) ** 2).mean()),
                    'D_B': 0.5 * (((nets['D_B'](real_B) - 1) ** 2).mean() + (nets['D_B'](fake_B) ** 2).mean())}
    G_opt, D_opt = cyclegan_loop.build_optimizers(nets, lr=0.0002, betas=(0.5, 0.999))
    pools = {name: cyclegan_loss.ImagePool(size=50) for name in 'AB'}
    state = cyclegan_loop.CycleGANState(nets, G_opt, D_opt, pools, {})
    collector = training_stats.Collector(regex='Loss/D_./loss')
    cyclegan_loop.discriminators_step(state, real_A, real_B, fake_A, fake_B, num_gpus=1)
    collector.update()
    for name, value in expected.items():
        assert collector.mean(f'Loss/{name}/loss') == pytest.approx(float(value), rel=1e-5), name
    assert len(pools['A'].images) == 2 and torch.equal(pools['B'].images[1], fake_B[1])
    assert all(p.grad is None for p in nets['G_AB'].parameters())

#----------------------------------------------------------------------------
# Data.

def _write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for idx, image in enumerate(images):
        PIL.Image.fromarray(image).save(folder / f'{idx:03d}.png')
    return str(folder)


def test_dataset_tool_source_b_writes_two_domains_with_own_counts(tmp_path):
    a = _write_pngs(tmp_path / 'a', [shapes2colors.render_pair_image(i, 32, 'A') for i in range(5)])
    b = _write_pngs(tmp_path / 'b', [shapes2colors.render_pair_image(i, 32, 'B') for i in range(3)])
    dest = tmp_path / 'ab.zip'
    result = CliRunner().invoke(dataset_tool.main, [f'--source={a}', f'--source-b={b}', f'--dest={dest}'])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(dest) as archive:
        names = archive.namelist()
        assert json.loads(archive.read('dataset.json')) == {'labels': None, 'domains': {'A': 5, 'B': 3}}
    assert sum(n.startswith('A/') for n in names) == 5 and sum(n.startswith('B/') for n in names) == 3
    info = unpaired_dataset.describe_unpaired(str(dest))
    assert info['folders'] == ['A', 'B'] and info['sizes'] == [5, 3] and info['image_shape'] == [3, 32, 32]


def test_dataset_tool_domains_of_different_sizes_fail_in_one_line(tmp_path):
    a = _write_pngs(tmp_path / 'a', [shapes2colors.render_pair_image(0, 32, 'A')])
    b = _write_pngs(tmp_path / 'b', [shapes2colors.render_pair_image(0, 64, 'B')])
    dest = tmp_path / 'ab.zip'
    result = CliRunner().invoke(dataset_tool.main, [f'--source={a}', f'--source-b={b}', f'--dest={dest}'])
    assert result.exit_code == 1
    assert 'domain A images are 32x32 RGB, domain B images 64x64 RGB; use --resolution=WxH' in result.stderr
    assert not dest.exists()
    resized = CliRunner().invoke(dataset_tool.main, [f'--source={a}', f'--source-b={b}', f'--dest={dest}',
                                                     '--resolution=32x32'])
    assert resized.exit_code == 0 and unpaired_dataset.describe_unpaired(str(dest))['sizes'] == [1, 1]


def test_builtin_pair_domains_differ_only_in_hue(tmp_path):
    a, b = shapes2colors.render_pair_image(7, 32, 'A'), shapes2colors.render_pair_image(7, 32, 'B')
    grey_a, grey_b = a.max(axis=2) - a.min(axis=2) < 2, b.max(axis=2) - b.min(axis=2) < 2
    assert np.array_equal(grey_a, grey_b) and np.array_equal(a[grey_a], b[grey_b])  # Same background.
    assert shapes2colors.warm_cool_score(a[None])[0] < -0.5 < 0.5 < shapes2colors.warm_cool_score(b[None])[0]


def test_reader_accepts_official_trainA_trainB_folders(tmp_path):
    _write_pngs(tmp_path / 'h2z' / 'trainA', [shapes2colors.render_pair_image(i, 32, 'A') for i in range(2)])
    _write_pngs(tmp_path / 'h2z' / 'trainB', [shapes2colors.render_pair_image(i, 32, 'B') for i in range(4)])
    info = unpaired_dataset.describe_unpaired(str(tmp_path / 'h2z'))
    assert info['folders'] == ['trainA', 'trainB'] and info['sizes'] == [2, 4]


def test_reader_names_missing_domains(tmp_path):
    _write_pngs(tmp_path / 'one' / 'A', [shapes2colors.render_pair_image(0, 32, 'A')])
    with pytest.raises(IOError, match='needs folders A/ and B/'):
        unpaired_dataset.find_domain_folders(str(tmp_path / 'one'))

#----------------------------------------------------------------------------
# Snapshots and the safe loader.

def _tiny_nets():
    torch.manual_seed(0)
    G = networks_cyclegan.ResnetGenerator(img_channels=3, ngf=4, num_blocks=1, img_resolution=32)
    D = networks_cyclegan.PatchDiscriminator(img_channels=3, ndf=4, img_resolution=32)
    return dict(G_AB=G, G_BA=pickle.loads(pickle.dumps(G)), D_A=D, D_B=pickle.loads(pickle.dumps(D)))


def test_snapshot_loads_bit_exact_through_safe_loader(tmp_path):
    nets = _tiny_nets()
    path = tmp_path / 'snap.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(nets, training_set_kwargs={'A': {'path': 'x'}}), f)
    data = cyclegan_snapshot.load_cyclegan_snapshot(str(path))
    x = torch.randn([1, 3, 32, 32])
    for key in cyclegan_snapshot.NETWORK_KEYS:
        assert type(data[key]) is type(nets[key])
        assert torch.equal(data[key](x), nets[key](x))
    with open(path, 'rb') as f:
        meta_src = f.read()
    assert b'class ResnetGenerator' in meta_src  # The module source travels with the weights.
    assert safe_pickle.detect_family(open(networks_cyclegan.__file__).read()) == 'cyclegan'


def test_stylegan_pickle_is_not_a_cyclegan_snapshot(tmp_path):
    path = tmp_path / 'sg.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=None, D=None, G_ema=None, training_set_kwargs={}), f)
    with pytest.raises(cyclegan_snapshot.NotCycleGANError, match='StyleGAN network pickle'):
        cyclegan_snapshot.load_cyclegan_snapshot(str(path))

#----------------------------------------------------------------------------
# translate.py.

def _invoke_translate(args):
    return CliRunner().invoke(translate.main, [str(arg) for arg in args])


@pytest.fixture
def tiny_snapshot(tmp_path):
    path = tmp_path / 'snap.pkl'
    with open(path, 'wb') as f:
        pickle.dump(_tiny_nets(), f)
    return path


def test_translate_folder_at_any_multiple_of_4(tmp_path, tiny_snapshot):
    src = tmp_path / 'in'
    (src / 'sub').mkdir(parents=True)
    PIL.Image.fromarray(shapes2colors.render_pair_image(1, 64, 'A')).save(src / 'big.png')
    PIL.Image.fromarray(shapes2colors.render_pair_image(2, 32, 'A')[:20, :28]).save(src / 'sub' / 'small.jpg')
    result = _invoke_translate([f'--network={tiny_snapshot}', '--direction=BtoA', f'--input={src}',
                                f'--outdir={tmp_path / "out"}', '--device=cpu'])
    assert result.exit_code == 0, result.stderr
    assert PIL.Image.open(tmp_path / 'out' / 'big.png').size == (64, 64)
    assert PIL.Image.open(tmp_path / 'out' / 'sub' / 'small.png').size == (28, 20)


@pytest.mark.parametrize('case, message', [
    ('direction', '--direction=sideways: choose AtoB'),
    ('size', 'is 30x32; the generator needs sides that are multiples of 4'),
    ('stylegan', 'is not a CycleGAN snapshot'),
])
def test_translate_bad_input_is_one_line_and_exit_1(tmp_path, tiny_snapshot, case, message):
    image = tmp_path / 'x.png'
    PIL.Image.fromarray(shapes2colors.render_pair_image(0, 32, 'A')[:, :30 if case == 'size' else 32]).save(image)
    network = tiny_snapshot
    if case == 'stylegan':
        network = tmp_path / 'sg.pkl'
        with open(network, 'wb') as f:
            pickle.dump(dict(G=None, D=None, G_ema=None), f)
    direction = 'sideways' if case == 'direction' else 'AtoB'
    result = _invoke_translate([f'--network={network}', f'--direction={direction}', f'--input={image}',
                                f'--outdir={tmp_path / "out"}'])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()

#----------------------------------------------------------------------------
# The paper's resize-and-crop jitter.

def _window_offsets(image, big):
    """Every (row, col) at which `image` [C, H, W] equals a window of `big` [C, H', W'] to float tolerance."""
    height, width = image.shape[1:]
    return [(row, col) for row in range(big.shape[1] - height + 1) for col in range(big.shape[2] - width + 1)
            if torch.allclose(big[:, row:row + height, col:col + width], image, atol=1e-6)]


def test_resize_and_crop_cuts_windows_of_the_bicubic_upscale():
    images = torch.rand([6, 3, 12, 16], generator=torch.Generator().manual_seed(1)) * 2 - 1  # Non-square.
    out = unpaired_dataset.resize_and_crop(images, 15, generator=torch.Generator().manual_seed(2))
    assert out.shape == images.shape
    big = torch.nn.functional.interpolate(images, size=(15, 20), mode='bicubic', align_corners=False).clamp(-1, 1)
    offsets = [_window_offsets(img, big_img) for img, big_img in zip(out, big)]
    assert all(len(found) == 1 for found in offsets), offsets  # Random images: each window is unique.
    assert len({found[0] for found in offsets}) > 1  # Each image gets its own offset.
    assert out.min() >= -1 and out.max() <= 1
    assert unpaired_dataset.resize_and_crop(images, 12) is images  # load_size = image size: no jitter.


def test_resize_and_crop_offsets_cover_every_position():
    images = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8).repeat(400, 1, 1, 1)
    big = torch.nn.functional.interpolate(images[:1], size=(10, 10), mode='bicubic', align_corners=False)[0]
    out = unpaired_dataset.resize_and_crop(images, 10, generator=torch.Generator().manual_seed(0))
    seen = {_window_offsets(img, big.clamp(-1, 1))[0] for img in out}
    assert seen == {(row, col) for row in range(3) for col in range(3)}


def test_training_reals_are_jittered_when_load_size_is_given():
    uint8 = torch.randint(256, [2, 3, 32, 32], dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    iterators = {name: iter([(uint8, None)] * 2) for name in 'AB'}
    plain_A, _ = cyclegan_loop.fetch_reals(iterators, torch.device('cpu'))
    assert torch.equal(plain_A, uint8.float() / 127.5 - 1)
    jittered_A, _ = cyclegan_loop.fetch_reals(iterators, torch.device('cpu'), load_size=40)
    big = torch.nn.functional.interpolate(plain_A, size=(40, 40), mode='bicubic', align_corners=False).clamp(-1, 1)
    assert all(len(_window_offsets(img, big_img)) == 1 for img, big_img in zip(jittered_A, big))

#----------------------------------------------------------------------------
# Config builder and exact resume.

def test_config_builder_paper_defaults_and_block_count():
    info = dict(name='h2z', folders=['trainA', 'trainB'], resolution=256, image_shape=[3, 256, 256], sizes=[9, 9])
    opts = train_cyclegan.build_cyclegan_options(info, data='h2z', outdir='runs', kimg=200)
    assert opts['G_kwargs'] == dict(class_name='training.networks_cyclegan.ResnetGenerator', ngf=64, num_blocks=9)
    assert opts['lr'] == 0.0002 and opts['betas'] == [0.5, 0.999] and opts['pool_size'] == 50
    assert opts['lambda_cycle'] == 10 and opts['identity_ratio'] == 0.5 and opts['decay_kimg'] == 100
    assert opts['training_set_kwargs']['B']['subfolder'] == 'trainB' and opts['batch_size'] == 1
    small = train_cyclegan.build_cyclegan_options(dict(info, resolution=128), data='h2z')
    assert small['G_kwargs']['num_blocks'] == 6
    assert 'load_size' not in opts  # Off by default; a load size equal to the images' is no jitter either:
    assert 'load_size' not in train_cyclegan.build_cyclegan_options(info, data='h2z', load_size=256)
    assert train_cyclegan.build_cyclegan_options(info, data='h2z', load_size=286)['load_size'] == 286
    assert train_cyclegan.wants_cyclegan(['--cfg', 'cyclegan']) and not train_cyclegan.wants_cyclegan(['--cfg=x'])


def _tiny_run_options(data, run_dir, **overrides):
    info = unpaired_dataset.describe_unpaired(data)
    options = train_cyclegan.build_cyclegan_options(info, data=data, batch=2, ngf=4, ndf=4, blocks=1, pool=3,
                                                    kimg=0.016, decay_kimg=0.008, tick=0.004, snap=1, workers=0,
                                                    device='cpu')
    options.pop('run_desc')
    # torch's thread count, fixed: the automatic team narrows under load, and float sums then round differently.
    options.update(run_dir=str(run_dir), grid_columns=2, num_threads=None, **overrides)
    os.makedirs(run_dir, exist_ok=True)
    return options


@pytest.fixture
def one_thread():
    """Tiny convolutions run fastest on one thread; on a shared machine, two threads spin against each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _run(options):
    with contextlib.redirect_stdout(io.StringIO()):
        return cyclegan_loop.cyclegan_loop(**options)


@pytest.fixture(scope='module')
def pair_zip(tmp_path_factory):
    import dataset_tool_unpaired
    dest = tmp_path_factory.mktemp('pair') / 'pair.zip'
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        dataset_tool_unpaired.convert_unpaired('builtin:shapes2colors', None, str(dest), 12, None, None, 'error')
    return str(dest)


@pytest.mark.parametrize('load_size', [None, 36])
def test_exact_resume_on_cpu_is_bit_exact(tmp_path, pair_zip, one_thread, load_size):
    full = _run(_tiny_run_options(pair_zip, tmp_path / 'full', load_size=load_size))
    stopped = _run(_tiny_run_options(pair_zip, tmp_path / 'part', abort_fn=lambda: True, load_size=load_size))
    assert 0 < stopped.cur_nimg < full.cur_nimg  # Stopped after tick 0.
    resumed = _run(_tiny_run_options(pair_zip, tmp_path / 'resumed', resume_pkl=str(tmp_path / 'part'),
                                     load_size=load_size))
    assert resumed.cur_nimg == full.cur_nimg == 16
    for key in cyclegan_snapshot.NETWORK_KEYS:
        for (name, a), (_, b) in zip(full.nets[key].named_parameters(), resumed.nets[key].named_parameters()):
            assert torch.equal(a, b), f'{key}.{name}'
    for name in 'AB':
        assert torch.equal(torch.stack(full.pools[name].images), torch.stack(resumed.pools[name].images))
    stats_full = [json.loads(line) for line in open(tmp_path / 'full' / 'stats.jsonl')]
    stats_resumed = [json.loads(line) for line in open(tmp_path / 'resumed' / 'stats.jsonl')]
    assert stats_full[-1]['Loss/G/total'] == stats_resumed[-1]['Loss/G/total']
    assert stats_full[-1]['Progress/lr']['mean'] < 0.0002  # The decay has started.
    run_files = os.listdir(tmp_path / 'full')
    assert {'reals.png', 'fakes_init.png', 'fakes000000.png', 'stats.jsonl'} <= set(run_files)
    assert PIL.Image.open(tmp_path / 'full' / 'fakes000000.png').size == (2 * 32, 6 * 32)

#----------------------------------------------------------------------------
# Command lines: train.py --cfg=cyclegan dispatch, errors, two processes.

def test_train_py_dispatches_cfg_cyclegan_dry_run(repo_root, pair_zip, tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, os.path.join(repo_root, 'train.py'), '--cfg', 'cyclegan',
                             f'--outdir={tmp_path}', f'--data={pair_zip}', '--ngf=8', '--dry-run'],
                            capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"class_name": "training.networks_cyclegan.ResnetGenerator"' in result.stdout
    assert 'cyclegan-pair-gpus1-batch1-ngf8' in result.stdout and 'Dry run; exiting.' in result.stdout
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('args, message', [
    (['--data=nowhere.zip'], '--data=nowhere.zip: nowhere.zip does not exist'),
    (['--kimg=1', '--decay-kimg=2'], '--decay-kimg=2 is longer than the whole run'),
    (['--resume=SG'], 'is not a CycleGAN snapshot'),
    (['--load-size=20'], '--load-size=20: the images are 32 px (shorter side); give a size from 32 (no jitter) to 64'),
    (['--load-size=65'], '--load-size=65: the images are 32 px'),
    (['--resume=DONE', '--kimg=1', '--ngf=4', '--ndf=4', '--blocks=1'], '--kimg=1 is already reached'),
    (['--resume=DONE', '--ngf=8', '--ndf=4', '--blocks=1'], 'has ngf 4 (run: 8); use the --ngf'),
])
def test_train_cyclegan_bad_options_are_one_line_exit_1(tmp_path, pair_zip, args, message):
    stylegan = tmp_path / 'sg.pkl'
    with open(stylegan, 'wb') as f:
        pickle.dump(dict(G=None, D=None, G_ema=None), f)
    done = tmp_path / 'done.pkl'
    with open(done, 'wb') as f:
        pickle.dump(dict(_tiny_nets(), resume_state=dict(cur_nimg=2000)), f)
    args = [arg.replace('SG', str(stylegan)).replace('DONE', str(done)) for arg in args]
    if not any(arg.startswith('--data=') for arg in args):
        args.append(f'--data={pair_zip}')
    result = CliRunner().invoke(train_cyclegan.cli, [f'--outdir={tmp_path / "runs"}', '--device=cpu'] + args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_gloo_processes_train_with_identical_parameters(tmp_path, pair_zip):
    info = unpaired_dataset.describe_unpaired(pair_zip)
    options = train_cyclegan.build_cyclegan_options(info, data=pair_zip, gpus=2, batch=4, ngf=4, ndf=4, blocks=1,
                                                    pool=3, kimg=0.012, tick=0.004, snap=1, workers=0,
                                                    device='cpu')
    options.update(grid_columns=2)
    with contextlib.redirect_stdout(io.StringIO()):
        train_cyclegan.launch(options, str(tmp_path), dry_run=False, run_start_time=None)
    run_dir = tmp_path / os.listdir(tmp_path)[0]
    data = cyclegan_snapshot.load_cyclegan_snapshot(str(run_dir / 'network-snapshot-000000.pkl'))
    state = data[cyclegan_snapshot.RESUME_STATE_KEY]
    # The snapshot ran check_ddp_consistency (equal parameters on both ranks); each rank has its own pools.
    assert state['cur_nimg'] == 12 and len(state['ranks']) == 2
    assert not torch.equal(torch.stack(state['ranks'][0]['pools']['A']['images']),
                           torch.stack(state['ranks'][1]['pools']['A']['images']))


@pytest.mark.slow
def test_tiny_cpu_run_learns_the_builtin_translation(tmp_path, repo_root, one_thread):
    """bench/bench_cyclegan.py's check at 2 kimg: L1 to the true pairs falls below the identity map's and the
    translations are classified as the target domain (about 80 s on 2 cores)."""
    from bench_helpers import load_bench
    bench = load_bench('bench_cyclegan')
    args = type('Args', (), dict(batch=4, ngf=8, blocks=3, kimg=2, images=500, seed=0, keep=None))()
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir, _sec, _options = bench.train(args, str(tmp_path))
    real_A, real_B = bench.eval_pairs()
    identity = bench.translation_figures(real_A, real_B, want_b=True)
    paths = sorted(str(tmp_path / 'run' / name) for name in os.listdir(run_dir) if name.endswith('.pkl'))
    first, last = (bench.evaluate_snapshot(path, real_A, real_B) for path in (paths[0], paths[-1]))
    for direction in ('AtoB', 'BtoA'):
        assert last[direction]['l1'] < min(first[direction]['l1'], identity['l1'])
        assert last[direction]['frac'] >= 0.9


def test_cli_run_writes_run_dir_and_resumes_from_it(tmp_path, pair_zip, one_thread):
    common = [f'--outdir={tmp_path}', f'--data={pair_zip}', '--batch=2', '--ngf=4', '--ndf=4', '--blocks=1',
              '--tick=0.004', '--snap=1', '--workers=0', '--device=cpu', '--threads=1']
    first = CliRunner().invoke(train_cyclegan.cli, common + ['--kimg=0.004'])
    assert first.exit_code == 0, first.output
    run_dir = tmp_path / '00000-cyclegan-pair-gpus1-batch2-ngf4'
    files = set(os.listdir(run_dir))
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'fakes_init.png', 'fakes000000.png',
            'network-snapshot-000000.pkl'} <= files
    log = (run_dir / 'log.txt').read_text()
    assert 'tick 0     kimg 0.0' in log and 'sec/kimg' in log and 'threads 1' in log
    second = CliRunner().invoke(train_cyclegan.cli, common + ['--kimg=0.008', f'--resume={run_dir}'])
    assert second.exit_code == 0, second.output
    resumed_log = (tmp_path / '00001-cyclegan-pair-gpus1-batch2-ngf4' / 'log.txt').read_text()
    assert 'Continuing exactly at 0.004 kimg, tick 2.' in resumed_log
