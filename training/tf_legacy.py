"""TF-era StyleGAN2 pickles: `(G, D, Gs)` tuples of `dnnlib.tflib.network.Network` objects -> our G, D, G_ema.

A TF-era Network pickles as its state dict: `version` (>= 4), `name`, `static_kwargs` (the arguments of its build
function), `build_module_src`, `build_func_name`, `components` (sub-networks, e.g. `mapping` and `synthesis` of G)
and `variables` (a list of (name, numpy array)). The safe unpickler (torch_utils/safe_pickle.py) maps the class onto
`torch_utils.tf_records.TFNetworkRecord`, which keeps those fields as plain data; the build source is never executed
and TensorFlow is not needed. This module lives in training/ because it builds training/ networks; callers pass
`convert_tf_snapshot` to `safe_pickle.load_network_pkl(convert_tf=...)` (legacy.py and the training loop's resume do).

Conversion goes parameter by parameter over *our* network built with the equivalent arguments: each of our
parameter/buffer names has exactly one TF variable name (the official TF StyleGAN2 naming: `Dense0/weight`,
`4x4/Const/const`, `8x8/Conv0_up/mod_weight`, `noise3`, `dlatent_avg`, `1024x1024/FromRGB/weight`, `Output/bias`,
...) and a layout change:
  * convolutions: TF [kh, kw, in, out] -> ours [out, in, kh, kw]; TF's up-sampling convolution (`Conv0_up`, the G
    `Skip`) is a transposed convolution with a flipped kernel, ours (flip_weight=False) uses it unflipped, so those
    kernels are also flipped spatially;
  * dense layers: TF [in, out] -> ours [out, in];
  * style affine bias: TF adds 1 after the layer (`mod_bias` starts at 0), ours stores the 1 in the bias;
  * constant input [1, C, 4, 4] -> [C, 4, 4]; noise images [1, 1, H, W] -> [H, W].
Every TF variable must be used and every parameter found, so a config we do not reproduce fails loudly.
"""

import re
import warnings

import numpy as np
import torch

from torch_utils import pickle_checks
from torch_utils.tf_records import TFNetworkRecord, is_tf_snapshot  # noqa: F401 (is_tf_snapshot re-exported)
from training import networks_stylegan2

#----------------------------------------------------------------------------
# Whole snapshots.

def convert_tf_snapshot(data):
    """(G, D, Gs) records (or Gs alone) -> dict(G, D, G_ema, augment_pipe=None, training_set_kwargs=None)."""
    if type(data) is TFNetworkRecord:
        data = (data,)
    if len(data) == 3:
        G, D, Gs = data
    elif len(data) == 1:
        G, D, Gs = None, None, data[0]
    else:
        raise ValueError(f'a TF-era pickle holds {len(data)} networks; expected (G, D, Gs) or Gs')
    return dict(G=convert_tf_generator(G) if G is not None else None,
                D=convert_tf_discriminator(D) if D is not None else None,
                G_ema=convert_tf_generator(Gs), augment_pipe=None, training_set_kwargs=None)

#----------------------------------------------------------------------------
# Variables and arguments of a record tree.

def collect_variables(record):
    """{name: array} over a record and its components; component variables under 'mapping/', 'synthesis/'
    (the TF scope names G_mapping/G_synthesis are accepted for the same thing)."""
    aliases = {'G_mapping': 'mapping', 'G_synthesis': 'synthesis'}
    found = {}

    def add(name, value):
        head, sep, tail = name.partition('/')
        if sep and head in aliases:
            name = aliases[head] + '/' + tail
        if name in found and not np.array_equal(found[name], value):
            raise ValueError(f'TF-era pickle: variable {name!r} appears twice with different values')
        found[name] = value

    def visit(rec, prefix):
        for name, value in rec.variables:
            add(prefix + name, value)
        for comp_name, comp in rec.components.items():
            visit(comp, prefix + aliases.get(comp_name, comp_name) + '/')
    visit(record, '')
    return found


def _static_kwargs(record):
    """Build arguments of a record with those of its components (which see the same settings) merged in."""
    kwargs = dict(record.static_kwargs)
    for comp in record.components.values():
        for key, value in comp.static_kwargs.items():
            kwargs.setdefault(key, value)
    return kwargs


def _require(kwargs, key, expected, default, network):
    value = kwargs.get(key, default)
    if isinstance(expected, list):
        matches = [float(v) for v in np.ravel(value)] == [float(v) for v in expected]
    else:
        matches = (value == expected)
    if not matches:
        raise ValueError(f'TF-era {network}: {key}={value!r} is not supported by the converter (needs {expected!r})')


def _channel_kwargs(kwargs, network):
    """TF channel rule nf(stage) = min(fmap_base / 2^stage, fmap_max) at stage log2(res) - 1 == ours at res."""
    _require(kwargs, 'fmap_decay', 1.0, 1.0, network)
    if kwargs.get('fmap_min', 1) > 1:
        raise ValueError(f'TF-era {network}: fmap_min={kwargs["fmap_min"]} is not supported by the converter')
    return dict(channel_base=2 * int(kwargs.get('fmap_base', 16 << 10)), channel_max=int(kwargs.get('fmap_max', 512)))


def _resolution(variables, network):
    sizes = [int(match.group(1)) for name in variables for match in [re.search(r'(\d+)x\1/', name)] if match]
    if not sizes:
        raise ValueError(f'TF-era {network}: no "<res>x<res>/" variables; is this a StyleGAN2 network?')
    return max(sizes)


def _construct_within_budget(cls, kwargs, variables, network):  # Also used by tf_legacy_stylegan1.
    """cls(**kwargs) with arguments read from the file: sizes bounded, and the network no larger than twice the
    TF variables it will receive (every parameter must be filled from one)."""
    pickle_checks.check_dimensions(kwargs, f'TF-era {network}')
    budget = 2 * sum(int(np.size(value)) for value in variables.values()) + (1 << 20)
    with pickle_checks.AllocationBudget(budget, f'TF-era {network}'):
        return cls(**kwargs)

#----------------------------------------------------------------------------
# Layout changes, TF -> ours.

def _conv(value, flip=False):
    weight = np.transpose(value, (3, 2, 0, 1))  # [kh, kw, in, out] -> [out, in, kh, kw]
    return weight[:, :, ::-1, ::-1] if flip else weight


_TRANSFORMS = {
    'conv':     _conv,
    'conv_up':  lambda value: _conv(value, flip=True),
    'dense':    lambda value: np.transpose(value),
    'mod_bias': lambda value: value + 1,
    'squeeze0': lambda value: value[0],
    'noise':    lambda value: value[0, 0],
    'same':     lambda value: value,
}


def _load_converted(module, variables, rule, network):
    """Copy TF variables into every parameter/buffer of `module`; `rule(our_name)` -> (tf_name, transform) or None
    (keep ours: filters and other constants). Unused TF variables are an error."""
    used = set()
    with torch.no_grad():
        for our_name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            found = rule(our_name)
            if found is None:
                continue
            tf_name, transform = found
            if tf_name not in variables:
                raise ValueError(f'TF-era {network}: variable {tf_name!r} (for {our_name}) is missing')
            value = np.array(_TRANSFORMS[transform](np.asarray(variables[tf_name], dtype=np.float32)), order='C')
            if list(value.shape) != list(tensor.shape):
                raise ValueError(f'TF-era {network}: {tf_name!r} has shape {list(variables[tf_name].shape)}, which '
                                 f'does not fit {our_name} {list(tensor.shape)} of the equivalent network')
            tensor.copy_(torch.from_numpy(value))
            used.add(tf_name)
    unused = sorted(set(variables) - used)
    if unused:
        raise ValueError(f'TF-era {network}: variables without a counterpart in our network: {", ".join(unused[:8])}'
                         f'{" ..." if len(unused) > 8 else ""}')
    return module.eval().requires_grad_(False)

#----------------------------------------------------------------------------
# Generator.

_G_LAYER_NAMES = {'conv0': 'Conv0_up', 'conv1': 'Conv1', 'torgb': 'ToRGB'}
_G_PARAM_NAMES = {'weight': ('weight', 'conv'), 'affine.weight': ('mod_weight', 'dense'),
                  'affine.bias': ('mod_bias', 'mod_bias'), 'noise_strength': ('noise_strength', 'same'),
                  'bias': ('bias', 'same')}


def _generator_rule(our_name):
    """Our G parameter name -> (TF variable name, transform), None for constants we keep."""
    if our_name.endswith('resample_filter'):
        return None
    match = re.fullmatch(r'mapping\.fc(\d+)\.(weight|bias)', our_name)
    if match:
        return f'mapping/Dense{match.group(1)}/{match.group(2)}', ('dense' if match.group(2) == 'weight' else 'same')
    if our_name == 'mapping.embed.weight':
        return 'mapping/LabelConcat/weight', 'dense'
    if our_name == 'mapping.embed.bias':
        return None  # TF's label embedding has no bias: ours stays zero.
    if our_name == 'mapping.w_avg':
        return 'dlatent_avg', 'same'
    match = re.fullmatch(r'synthesis\.b(\d+)\.(const|skip\.weight)', our_name)
    if match:
        res = int(match.group(1))
        if match.group(2) == 'const':
            return f'synthesis/{res}x{res}/Const/const', 'squeeze0'
        return f'synthesis/{res}x{res}/Skip/weight', 'conv_up'
    match = re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)', our_name)
    if not match:
        raise ValueError(f'TF-era generator: no TF variable corresponds to {our_name}')
    res, layer, param = int(match.group(1)), match.group(2), match.group(3)
    if param == 'noise_const':
        noise_idx = 2 * int(np.log2(res)) - (5 if layer == 'conv0' else 4)  # noise0 = 4x4, then 2 per resolution.
        return f'synthesis/noise{noise_idx}', 'noise'
    tf_layer = 'Conv' if (res == 4 and layer == 'conv1') else _G_LAYER_NAMES[layer]
    tf_param, transform = _G_PARAM_NAMES[param]
    if layer == 'conv0' and param == 'weight':
        transform = 'conv_up'
    return f'synthesis/{res}x{res}/{tf_layer}/{tf_param}', transform


def generator_kwargs(record, variables):
    """Arguments of our networks_stylegan2.Generator equivalent to a TF-era G_main record."""
    kwargs = _static_kwargs(record)
    for key, expected, default in [('nonlinearity', 'lrelu', 'lrelu'), ('mapping_nonlinearity', 'lrelu', 'lrelu'),
                                   ('normalize_latents', True, True), ('resample_kernel', [1, 3, 3, 1], [1, 3, 3, 1]),
                                   ('use_noise', True, True)]:
        _require(kwargs, key, expected, default, 'generator')
    label_size = int(kwargs.get('label_size', 0))
    if label_size > 0:
        warnings.warn('TF-era conditional generator: TF normalised [z, embed(c)] jointly, ours normalises each; '
                      'images will differ from the TF network', stacklevel=3)
    num_mapping_layers = len([name for name in variables if re.fullmatch(r'mapping/Dense\d+/weight', name)])
    latent_size = int(kwargs.get('latent_size', 512))
    dlatent_size = int(kwargs.get('dlatent_size', 512))
    mapping_kwargs = dict(num_layers=num_mapping_layers, layer_features=int(kwargs.get('mapping_fmaps', dlatent_size)),
                          lr_multiplier=float(kwargs.get('mapping_lrmul', 0.01)), embed_features=latent_size,
                          w_avg_beta=float(kwargs.get('dlatent_avg_beta', 0.995)))
    num_channels = variables[f'synthesis/4x4/ToRGB/weight'].shape[-1] if 'synthesis/4x4/ToRGB/weight' in variables \
        else int(kwargs.get('num_channels', 3))
    return dict(z_dim=latent_size, c_dim=label_size, w_dim=dlatent_size,
                img_resolution=_resolution(variables, 'generator'), img_channels=int(num_channels),
                mapping_kwargs=mapping_kwargs, architecture=kwargs.get('architecture', 'skip'),
                num_fp16_res=0, conv_clamp=None, **_channel_kwargs(kwargs, 'generator'))


def convert_tf_generator(record):
    """A TF-era StyleGAN2 G or Gs record -> our networks_stylegan2.Generator with the same weights."""
    from training import tf_legacy_stylegan1  # Here: tf_legacy_stylegan1 imports this module.
    if tf_legacy_stylegan1.is_stylegan1_generator(record):
        return tf_legacy_stylegan1.convert_tf_generator(record)
    variables = collect_variables(record)
    if not any(name.endswith('/mod_weight') for name in variables):
        raise ValueError(f'TF-era network {record.name!r} ({record.build_func_name}) is not a StyleGAN2 generator '
                         f'(no modulated convolutions); only StyleGAN2 TF pickles are converted')
    G = _construct_within_budget(networks_stylegan2.Generator, generator_kwargs(record, variables), variables,
                                 'generator')
    return _load_converted(G, variables, _generator_rule, 'generator')

#----------------------------------------------------------------------------
# Discriminator.

_D_LAYER_NAMES = {'fromrgb': 'FromRGB', 'conv0': 'Conv0', 'conv1': 'Conv1_down', 'skip': 'Skip'}


def _discriminator_rule(our_name):
    """Our D parameter name -> (TF variable name, transform), None for constants we keep."""
    if our_name.endswith('resample_filter'):
        return None
    match = re.fullmatch(r'b4\.(fromrgb|conv|fc|out)\.(weight|bias)', our_name)
    if match:
        layer, param = match.groups()
        tf_layer = {'fromrgb': '4x4/FromRGB', 'conv': '4x4/Conv', 'fc': '4x4/Dense0', 'out': 'Output'}[layer]
        transform = 'same' if param == 'bias' else ('dense' if layer in ('fc', 'out') else 'conv')
        return f'{tf_layer}/{param}', transform
    match = re.fullmatch(r'b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)', our_name)
    if not match:
        raise ValueError(f'TF-era discriminator: no TF variable corresponds to {our_name}')
    res, layer, param = int(match.group(1)), match.group(2), match.group(3)
    return f'{res}x{res}/{_D_LAYER_NAMES[layer]}/{param}', ('conv' if param == 'weight' else 'same')


def discriminator_kwargs(record, variables):
    """Arguments of our networks_stylegan2.Discriminator equivalent to a TF-era D_stylegan2 record."""
    kwargs = _static_kwargs(record)
    for key, expected, default in [('nonlinearity', 'lrelu', 'lrelu'), ('resample_kernel', [1, 3, 3, 1], [1, 3, 3, 1])]:
        _require(kwargs, key, expected, default, 'discriminator')
    if int(kwargs.get('label_size', 0)) > 0:
        raise ValueError('TF-era conditional discriminators are not converted (TF projected the output directly '
                         'onto the label, ours through a label mapping network); convert G and Gs only')
    num_channels = next((value.shape[2] for name, value in variables.items() if name.endswith('/FromRGB/weight')),
                        int(kwargs.get('num_channels', 3)))
    epilogue_kwargs = dict(mbstd_group_size=int(kwargs.get('mbstd_group_size', 4)),
                           mbstd_num_channels=int(kwargs.get('mbstd_num_features', 1)))
    return dict(c_dim=0, img_resolution=_resolution(variables, 'discriminator'), img_channels=int(num_channels),
                architecture=kwargs.get('architecture', 'resnet'), num_fp16_res=0, conv_clamp=None,
                epilogue_kwargs=epilogue_kwargs, **_channel_kwargs(kwargs, 'discriminator'))


def convert_tf_discriminator(record):
    """A TF-era StyleGAN2 D record -> our networks_stylegan2.Discriminator with the same weights."""
    from training import tf_legacy_stylegan1
    if tf_legacy_stylegan1.is_stylegan1_discriminator(record):
        return tf_legacy_stylegan1.convert_tf_discriminator(record)
    variables = collect_variables(record)
    D = _construct_within_budget(networks_stylegan2.Discriminator, discriminator_kwargs(record, variables),
                                 variables, 'discriminator')
    return _load_converted(D, variables, _discriminator_rule, 'discriminator')

#----------------------------------------------------------------------------
