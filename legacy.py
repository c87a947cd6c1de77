"""Load and convert network pickles: ours, the official StyleGAN2-ADA / StyleGAN3 ones, and TF-era StyleGAN2 ones.

Library use (what gen_images.py and the other tools call):
    import legacy
    with open('network.pkl', 'rb') as f:                 # or dnnlib.util.open_url(url)
        G = legacy.load_network_pkl(f)['G_ema']          # safe: nothing from the file is executed

Command line: convert any supported pickle into a clean snapshot of ours (official layout, our module sources):
    python legacy.py --source=stylegan2-ffhq-config-f.pkl --dest=ffhq.pkl
    python legacy.py --source=network-snapshot-001000.pkl --dest=fp16.pkl --force-fp16=1
    python legacy.py --source=network-snapshot-001000.pkl --dest=net.safetensors   # weights + JSON, no code

Every loader here (and so every tool) also reads such `.safetensors` snapshots wherever it reads a pickle.

The loader itself (restricted unpickler, family detection) lives in torch_utils/safe_pickle.py and the TF-era
conversion in training/tf_legacy.py; this module is the public entry point with the official names.
"""


import click

import dnnlib
from torch_utils import persistence
from torch_utils import safe_pickle
from torch_utils import safetensors_io
from torch_utils.safe_pickle import CorruptPickleError, UnsafePickleError  # noqa: F401 (re-exported)
from training import network_families
from training import tf_legacy
from training.tf_legacy import convert_tf_discriminator, convert_tf_generator  # noqa: F401 (official names)

#----------------------------------------------------------------------------

def load_network_pkl(f, force_fp16=False, allow_exec=False):
    """Snapshot dict (G, D, G_ema, augment_pipe, training_set_kwargs, ...) from a path or binary file.

    force_fp16: rebuild the networks with num_fp16_res=4, conv_clamp=256 (the official option).
    allow_exec: trusted files only: run the source code embedded in pickles of unknown classes.
    Raises UnsafePickleError (refused content) or CorruptPickleError (truncated, corrupt, not a network pickle).
    """
    return safe_pickle.load_network_pkl(f, force_fp16=force_fp16, allow_exec=allow_exec,
                                        convert_tf=tf_legacy.convert_tf_snapshot, families=network_families.FAMILIES)


def clean_snapshot(data):
    """The standard snapshot keys of `data`, every network rebuilt by our current code from its constructor
    arguments and holding a copy of its weights (so old-state objects become current ones)."""
    clean = dict(training_set_kwargs=data.get('training_set_kwargs'))
    for key in ['G', 'D', 'G_ema', 'augment_pipe']:
        module = data.get(key)
        try:
            clean[key] = safe_pickle.rebuild_network(module) if persistence.is_persistent(module) else module
        except (UnsafePickleError, CorruptPickleError):
            raise
        except Exception as err:  # init_kwargs from the file that our constructors reject.
            raise CorruptPickleError(f'{key}: cannot rebuild it from its init_kwargs ({type(err).__name__}: '
                                     f'{str(err)[:300]})') from err
    if clean['training_set_kwargs'] is not None:
        clean['training_set_kwargs'] = dict(clean['training_set_kwargs'])
    return clean


def convert_network_pickle(source, dest, force_fp16=False, allow_exec=False):
    """Read `source` (path or URL) with load_network_pkl and write a clean snapshot of ours to `dest` atomically:
    a `.safetensors` file (weights + JSON constructor arguments, see torch_utils/safetensors_io.py) when `dest`
    ends with that, else a pickle."""
    with dnnlib.util.open_url(source) as f:
        data = load_network_pkl(f, force_fp16=force_fp16, allow_exec=allow_exec)
    if str(dest).lower().endswith('.safetensors'):
        safetensors_io.save_network_safetensors(clean_snapshot(data), dest, network_families.FAMILIES)
    else:
        safe_pickle.save_network_pkl(clean_snapshot(data), dest)

#----------------------------------------------------------------------------

EXAMPLES = '''\b
Examples:
  # An official StyleGAN2-ADA pickle as a clean snapshot of ours (loads safely everywhere):
  python legacy.py --source=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl --dest=ffhq.pkl
  # A TF-era StyleGAN2 pickle, with FP16 in the top layers:
  python legacy.py --source=stylegan2-ffhq-config-f.pkl --dest=ffhq-f.pkl --force-fp16=1'''


@click.command(epilog=EXAMPLES)
@click.option('--source', help='Input pickle: ours, official StyleGAN2-ADA/StyleGAN3, or TF-era StyleGAN2',
              required=True, metavar='PATH|URL')
@click.option('--dest', help='Output pickle, or a .safetensors file (weights + JSON arguments); written atomically',
              required=True, metavar='PATH')
@click.option('--force-fp16', help='Force the networks to use FP16 (num_fp16_res=4, conv_clamp=256)', type=bool,
              default=False, is_flag=False, flag_value=True, show_default=True, metavar='BOOL')
@click.option('--allow-exec', help='Run source code embedded in the pickle (trusted files only; never needed for '
              'official or our files)', is_flag=True)
def main(source, dest, force_fp16, allow_exec):
    """Convert a network pickle into a clean snapshot of ours that the official tools also load."""
    try:
        convert_network_pickle(source, dest, force_fp16=force_fp16, allow_exec=allow_exec)
    except (UnsafePickleError, CorruptPickleError, ValueError) as err:  # SafetensorsFormatError is a ValueError.
        raise click.ClickException(str(err)) from err
    except OSError as err:
        raise click.ClickException(f'cannot read {source} or write {dest}: {err}') from err
    click.echo(f'Wrote {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
