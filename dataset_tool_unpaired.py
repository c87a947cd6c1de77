"""dataset_tool.py for CycleGAN: two image sources (domains A and B) into one unpaired dataset.

    python dataset_tool.py --source=~/horses --source-b=~/zebras --dest=datasets/horse2zebra-256.zip \\
        --transform=center-crop --resolution=256x256
    python dataset_tool.py --source=builtin:shapes2colors --dest=datasets/shapes2colors-32.zip --max-images=1000

Each source is any source dataset_tool.py reads (folder, zip, ...); --max-images, --transform, --resolution and
--rgba apply to each domain. The output holds A/<...>.png and B/<...>.png with their own image counts, and
dataset.json = {"labels": null, "domains": {"A": count, "B": count}} (see training/unpaired_dataset.py). Both
domains must end up the same size and channel count. `dataset_tool.main` calls `convert_unpaired` when
--source-b is given or --source is builtin:shapes2colors; everything else about the tool is unchanged.
"""

import json

import click

import dataset_tool
from training import dataset_sources
from training import shapes2colors

BUILTIN_PAIR_DEFAULT_COUNT = 1000   # Images per domain.

#----------------------------------------------------------------------------

class _FolderWriter:
    """Writes through `writer` with every name placed under `folder/`."""

    def __init__(self, writer, folder):
        self.writer = writer
        self.folder = folder

    def write(self, name, data):
        self.writer.write(f'{self.folder}/{name}', data)


def open_builtin_domain(domain, count, resolution):
    """`count` images of one domain of builtin:shapes2colors. Domain A renders scenes 0..count-1 and B scenes
    count..2 count-1, so no image of B is the translation of an image of A (unpaired, as in real data)."""
    first = 0 if domain == 'A' else count

    def items():
        for index in range(first, first + count):
            image = shapes2colors.render_pair_image(index, resolution, domain)
            yield dataset_sources.SourceItem(name=f'{shapes2colors.BUILTIN_PAIR}[{domain}{index}]',
                                             load=lambda image=image: image)

    return dataset_sources.Source(num_items=count, items=items(),
                                  description=f'{shapes2colors.BUILTIN_PAIR} domain {domain} ({count} images)')


def open_domains(source, source_b, max_images, resolution):
    """[('A', Source), ('B', Source)] for the options; raises DatasetToolError."""
    builtin = shapes2colors.BUILTIN_PAIR
    if source == builtin:
        if source_b is not None:
            raise dataset_tool.DatasetToolError(f'--source={builtin} holds both domains; leave out --source-b')
        side = resolution[0] if resolution else 32
        if resolution is not None and resolution[0] != resolution[1]:
            raise dataset_tool.DatasetToolError(f'--source={builtin} renders square images, not '
                                                f'{resolution[0]}x{resolution[1]}')
        count = max_images or BUILTIN_PAIR_DEFAULT_COUNT
        try:
            shapes2colors.render_pair_image(0, side, 'A')  # Checks the resolution before anything is written.
        except ValueError as error:
            raise dataset_tool.DatasetToolError(str(error)) from error
        return [(domain, open_builtin_domain(domain, count, side)) for domain in shapes2colors.DOMAINS]
    if source_b is None:
        raise dataset_tool.DatasetToolError('--source-b is required for an unpaired dataset')
    if builtin in (source_b,):
        raise dataset_tool.DatasetToolError(f'--source-b={builtin}: use --source={builtin} alone')
    try:
        return [('A', dataset_sources.open_source(source)), ('B', dataset_sources.open_source(source_b))]
    except dataset_sources.SourceError as error:
        raise dataset_tool.DatasetToolError(str(error)) from error


def convert_unpaired(source, source_b, dest, max_images, transform, resolution, rgba, force=False):
    """Write the unpaired dataset at `dest` (see the module docstring); prints a summary line."""
    dataset_tool.check_options(transform, resolution)
    domains = open_domains(source, source_b, max_images, resolution)
    for _folder, opened in domains:
        for path, reason in opened.skipped:
            click.echo(f'dataset_tool: skipping {path}: {reason}', err=True)
    transform_fn = dataset_tool.make_transform(transform, resolution)
    counts, first_arrays, skipped = {}, {}, []
    try:
        with dataset_tool.open_writer(dest, force) as writer:
            for folder, opened in domains:
                num_images = opened.num_items if max_images is None else min(opened.num_items, max_images)
                _labels, first_arrays[folder], domain_skipped = dataset_tool.convert(
                    opened, _FolderWriter(writer, folder), num_images, transform_fn, rgba)
                counts[folder] = num_images - len(domain_skipped)
                skipped += domain_skipped
            _check_same_shape(first_arrays['A'].shape, first_arrays['B'].shape)
            writer.write('dataset.json', json.dumps({'labels': None, 'domains': counts}).encode('utf-8'))
    except dataset_sources.SourceError as error:
        raise dataset_tool.DatasetToolError(str(error)) from error
    except OSError as error:  # A read-only folder, --dest under a file, a full disk.
        raise dataset_tool.DatasetToolError(f'cannot write {error.filename or dest}: {error.strerror or error}') \
            from error
    if skipped:
        click.echo(dataset_tool.describe_skipped(skipped))
    height, width, channels = first_arrays['A'].shape
    click.echo(f'Wrote {counts["A"]} + {counts["B"]} unpaired images ({width}x{height} '
               f'{dataset_tool.channel_name(channels)}) from {domains[0][1].description} (A) and '
               f'{domains[1][1].description} (B) to {dest}')


def _check_same_shape(shape_a, shape_b):
    """Both domains must hold images of one size and channel count ([H, W, C] of their first images)."""
    if shape_a != shape_b:
        raise dataset_tool.DatasetToolError(
            f'domain A images are {shape_a[1]}x{shape_a[0]} {dataset_tool.channel_name(shape_a[2])}, domain '
            f'B images {shape_b[1]}x{shape_b[0]} {dataset_tool.channel_name(shape_b[2])}; use '
            '--resolution=WxH (and convert both to one mode)')

#----------------------------------------------------------------------------
