"""TF-era StyleGAN (1) pickles (`karras2019stylegan-*.pkl`) -> our networks_stylegan1.Generator, without TensorFlow.

The official files hold `(G, D, Gs)`: `G_style` networks with the components `mapping` (G_mapping) and `synthesis`
(G_synthesis), and a `D_basic` discriminator. The safe unpickler of the StyleGAN2 TF path reads them as plain
records (fields `static_kwargs`, `variables`, `components`); this module maps the variables of a G_style record
onto our generator. Variable names (released TF code):

    G_style      dlatent_avg [w_dim], lod []
    G_mapping    Dense{i}/weight [in, out], Dense{i}/bias [out]              (lr multiplier 0.01, gain sqrt 2)
    G_synthesis  lod [], noise{i} [1, 1, res, res]                             (layer i: 0, 1 at 4x4, then 2 per res)
                 4x4/Const/const [1, C, 4, 4]; 4x4/Const|4x4/Conv|{r}x{r}/Conv0_up|{r}x{r}/Conv1 each with
                 weight [3, 3, in, out] (not Const), bias [C], Noise/weight [C], StyleMod/weight [w_dim, 2C],
                 StyleMod/bias [2C]; ToRGB_lod{k}/weight [1, 1, C, img_channels], ToRGB_lod{k}/bias

Layout and scale changes (TF -> ours):
  * conv [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in];
  * TF multiplies each layer's weights by gain sqrt 2 and applies leaky ReLU without gain; ours uses weight gain 1
    and multiplies the activation output by sqrt 2. Leaky ReLU is positively homogeneous, so
    sqrt2 * lrelu(W x + (b + B n) / sqrt2) = lrelu(sqrt2 W x + b + B n): biases, noise strengths and the constant
    are divided by sqrt 2 and the networks agree exactly (pre-activation values differ by the factor 1/sqrt 2);
  * StyleMod: TF computes x * (y_s + 1) + y_b; ours stores the +1 in the affine bias;
  * the TF generator upsamples, convolves, then blurs: our layers are built with blur_after_conv=True.
Only a finished generator (lod 0) converts: ToRGB_lod0 is our ToRGB, the lower ToRGB_lod{k} are dropped.

D_basic (the SG1 release's discriminator) converts to our networks_stylegan1.Discriminator, which has its layout:
    lod [], FromRGB_lod{k}/weight|bias (one per resolution), {r}x{r}/Conv0 and {r}x{r}/Conv1_down (blur, 3x3 conv,
    2x2 average pooling: the TF fused form is the same operation), 4x4/Conv (after minibatch stddev), 4x4/Dense0,
    4x4/Dense1 (gain 1, no activation; one output per label when conditional).
The same sqrt 2 rule applies to its biases; its lod (also a fractional one) becomes our D's lod buffer.
"""

import re

import numpy as np
import torch

SQRT2 = np.sqrt(2)
_COMPONENT_ALIASES = {'G_mapping': 'mapping', 'G_synthesis': 'synthesis', 'mapping': 'mapping',
                      'synthesis': 'synthesis'}

#----------------------------------------------------------------------------
# Recognising StyleGAN1 records.

def collect_variables(record):
    """{name: float32 array} of a G_style record: its own variables, and mapping/..., synthesis/... (TF scope
    prefixes G_mapping/, G_synthesis/ mean the same)."""
    found = {}

    def add(name, value):
        head, sep, tail = name.partition('/')
        if sep and head in ('G_mapping', 'G_synthesis'):
            name = _COMPONENT_ALIASES[head] + '/' + tail
        found[name] = np.asarray(value, dtype=np.float32)

    for name, value in record.variables:
        add(name, value)
    for comp_name, comp in record.components.items():
        prefix = _COMPONENT_ALIASES.get(comp_name, comp_name)
        for name, value in comp.variables:
            add(f'{prefix}/{name}', value)
    return found


def is_stylegan1_generator(record):
    """True for a TF-era G_style record (AdaIN layers: StyleMod variables, no modulated convolutions)."""
    names = [name for name, _ in record.variables]
    for comp in record.components.values():
        names += [name for name, _ in comp.variables]
    return any(name.endswith('StyleMod/weight') for name in names)


def is_stylegan1_discriminator(record):
    """True for a TF-era D_basic record (per-lod FromRGB layers)."""
    return any(name.startswith('FromRGB_lod') for name, _ in record.variables)

#----------------------------------------------------------------------------
# Arguments of the equivalent generator.

def _settings(record):
    kwargs = dict(record.static_kwargs)
    for comp in record.components.values():
        for key, value in comp.static_kwargs.items():
            kwargs.setdefault(key, value)
    return kwargs


_REQUIRED_SETTINGS = [  # (static kwarg, value we reproduce, TF default)
    ('nonlinearity', 'lrelu', 'lrelu'), ('mapping_nonlinearity', 'lrelu', 'lrelu'), ('use_wscale', True, True),
    ('normalize_latents', True, True), ('use_styles', True, True), ('const_input_layer', True, True),
    ('use_noise', True, True), ('use_pixel_norm', False, False), ('use_instance_norm', True, True),
    ('fmap_decay', 1.0, 1.0), ('label_size', 0, 0)]


def generator_kwargs(record, variables):
    """Arguments of our networks_stylegan1.Generator equivalent to a TF-era G_style record."""
    settings = _settings(record)
    for key, expected, default in _REQUIRED_SETTINGS:
        if settings.get(key, default) != expected:
            raise ValueError(f'TF-era StyleGAN1 generator: {key}={settings.get(key)!r} is not supported by the '
                             f'converter (needs {expected!r})')
    blur = [float(v) for v in np.ravel(settings.get('blur_filter', [1, 2, 1]))]
    if blur != [1.0, 2.0, 1.0]:
        raise ValueError(f'TF-era StyleGAN1 generator: blur_filter={blur} is not supported (needs [1, 2, 1])')
    sizes = [int(m.group(1)) for name in variables for m in [re.match(r'synthesis/(\d+)x\1/', name)] if m]
    if not sizes or 'synthesis/ToRGB_lod0/weight' not in variables:
        raise ValueError('TF-era StyleGAN1 generator: no synthesis/<res>x<res>/ or ToRGB_lod0 variables')
    dense = sorted(int(m.group(1)) for name in variables for m in [re.fullmatch(r'mapping/Dense(\d+)/weight', name)]
                   if m)
    z_dim, w_dim = variables['mapping/Dense0/weight'].shape[0], variables[f'mapping/Dense{dense[-1]}/weight'].shape[1]
    mapping_kwargs = dict(num_layers=len(dense), layer_features=int(settings.get('mapping_fmaps', w_dim)),
                          lr_multiplier=float(settings.get('mapping_lrmul', 0.01)),
                          w_avg_beta=float(settings.get('dlatent_avg_beta', 0.995)))
    return dict(z_dim=int(z_dim), c_dim=0, w_dim=int(w_dim), img_resolution=max(sizes),
                img_channels=int(variables['synthesis/ToRGB_lod0/weight'].shape[-1]), mapping_kwargs=mapping_kwargs,
                channel_base=2 * int(settings.get('fmap_base', 8192)), channel_max=int(settings.get('fmap_max', 512)),
                blur_after_conv=True)

#----------------------------------------------------------------------------
# Variable name and layout of each of our parameters.

_TRANSFORMS = {
    'conv':     lambda v: np.transpose(v, (3, 2, 0, 1)),      # [kh, kw, in, out] -> [out, in, kh, kw]
    'dense':    lambda v: np.transpose(v),                    # [in, out] -> [out, in]
    'gain':     lambda v: v / SQRT2,                          # Gain moved behind the activation (module doc).
    'const':    lambda v: v[0] / SQRT2,
    'noise':    lambda v: v[0, 0],
    'style':    lambda v: v + np.repeat([1.0, 0.0], v.shape[0] // 2).astype(np.float32),
    'same':     lambda v: v,
}


def _layer_scope(res, layer):
    if res == 4:
        return '4x4/Const' if layer == 'conv0' else '4x4/Conv'
    return f'{res}x{res}/' + ('Conv0_up' if layer == 'conv0' else 'Conv1')


def generator_rule(our_name):
    """Our parameter/buffer name -> (TF variable name, transform), or None for constants we keep."""
    if our_name.endswith('blur_filter'):
        return None
    match = re.fullmatch(r'mapping\.fc(\d+)\.(weight|bias)', our_name)
    if match:
        return f'mapping/Dense{match.group(1)}/{match.group(2)}', 'dense' if match.group(2) == 'weight' else 'gain'
    if our_name == 'mapping.w_avg':
        return 'dlatent_avg', 'same'
    if our_name == 'synthesis.b4.const':
        return 'synthesis/4x4/Const/const', 'const'
    match = re.fullmatch(r'synthesis\.b(\d+)\.torgb\.(weight|bias)', our_name)
    if match:
        return f'synthesis/ToRGB_lod0/{match.group(2)}', 'conv' if match.group(2) == 'weight' else 'same'
    match = re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1)\.(.+)', our_name)
    if not match:
        raise ValueError(f'TF-era StyleGAN1 generator: no TF variable corresponds to {our_name}')
    res, layer, param = int(match.group(1)), match.group(2), match.group(3)
    if param == 'noise_const':
        return f'synthesis/noise{2 * int(np.log2(res)) - (4 if layer == "conv0" else 3)}', 'noise'
    scope = 'synthesis/' + _layer_scope(res, layer)
    tf_name, transform = {'weight': ('weight', 'conv'), 'bias': ('bias', 'gain'),
                          'noise_strength': ('Noise/weight', 'gain'), 'affine.weight': ('StyleMod/weight', 'dense'),
                          'affine.bias': ('StyleMod/bias', 'style')}[param]
    return f'{scope}/{tf_name}', transform


def _ignored(name):
    """TF variables with no counterpart in a finished network: the lod counters and the lower-lod ToRGB layers."""
    return name in ('lod', 'synthesis/lod') or re.fullmatch(r'synthesis/ToRGB_lod[1-9]\d*/(weight|bias)', name)


def load_variables(module, variables, rule, network='generator'):
    """Copy every TF variable into `module` through rule(our_name); missing, unused or misshapen ones are errors."""
    used = set()
    with torch.no_grad():
        for our_name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            found = rule(our_name)
            if found is None:
                continue
            tf_name, transform = found
            if tf_name not in variables:
                raise ValueError(f'TF-era StyleGAN1 {network}: variable {tf_name!r} (for {our_name}) is missing')
            value = np.array(_TRANSFORMS[transform](variables[tf_name]), dtype=np.float32, order='C')
            if list(value.shape) != list(tensor.shape):
                raise ValueError(f'TF-era StyleGAN1 {network}: {tf_name!r} has shape {list(variables[tf_name].shape)}'
                                 f', which does not fit {our_name} {list(tensor.shape)}')
            tensor.copy_(torch.from_numpy(value))
            used.add(tf_name)
    unused = sorted(name for name in set(variables) - used if not _ignored(name))
    if unused:
        raise ValueError(f'TF-era StyleGAN1 {network}: variables without a counterpart: {", ".join(unused[:8])}'
                         f'{" ..." if len(unused) > 8 else ""}')
    return module.eval().requires_grad_(False)

#----------------------------------------------------------------------------

def convert_tf_generator(record):
    """A TF-era G_style (G or Gs) record -> our networks_stylegan1.Generator with the same weights."""
    from training import networks_stylegan1
    variables = collect_variables(record)
    for name in ('lod', 'synthesis/lod'):
        if name in variables and float(variables[name]) != 0:
            raise ValueError(f'TF-era StyleGAN1 generator: {name}={float(variables[name]):g}; only finished '
                             f'networks (lod 0) are converted')
    from training.tf_legacy import _construct_within_budget  # Sizes from the file: bounded before allocating.
    G = _construct_within_budget(networks_stylegan1.Generator, generator_kwargs(record, variables), variables,
                                 'StyleGAN1 generator')
    return load_variables(G, variables, generator_rule)


def discriminator_rule(img_resolution):
    """rule(our_name) -> (TF variable name of D_basic, transform) or None, for a D of img_resolution."""
    def rule(our_name):
        if our_name.endswith('blur_filter'):
            return None
        if our_name == 'lod':
            return 'lod', 'same'
        match = re.fullmatch(r'b(\d+)\.(fromrgb|conv0|conv1|conv|fc|out)\.(weight|bias)', our_name)
        if not match:
            raise ValueError(f'TF-era StyleGAN1 discriminator: no TF variable corresponds to {our_name}')
        res, layer, param = int(match.group(1)), match.group(2), match.group(3)
        scope = {'fromrgb': f'FromRGB_lod{int(np.log2(img_resolution // res))}', 'conv0': f'{res}x{res}/Conv0',
                 'conv1': f'{res}x{res}/Conv1_down', 'conv': '4x4/Conv', 'fc': '4x4/Dense0', 'out': '4x4/Dense1'}[layer]
        if param == 'weight':
            return f'{scope}/weight', 'dense' if layer in ('fc', 'out') else 'conv'
        return f'{scope}/bias', 'same' if layer == 'out' else 'gain'  # Every layer but the output has lrelu.
    return rule


def discriminator_kwargs(record, variables):
    """Arguments of our networks_stylegan1.Discriminator equivalent to a TF-era D_basic record."""
    settings = _settings(record)
    for key, expected, default in [('nonlinearity', 'lrelu', 'lrelu'), ('use_wscale', True, True),
                                   ('fmap_decay', 1.0, 1.0), ('mbstd_num_features', 1, 1)]:
        if settings.get(key, default) != expected:
            raise ValueError(f'TF-era StyleGAN1 discriminator: {key}={settings.get(key)!r} is not supported by the '
                             f'converter (needs {expected!r})')
    if [float(v) for v in np.ravel(settings.get('blur_filter', [1, 2, 1]))] != [1.0, 2.0, 1.0]:
        raise ValueError('TF-era StyleGAN1 discriminator: only blur_filter=[1, 2, 1] is supported')
    sizes = [int(m.group(1)) for name in variables for m in [re.match(r'(\d+)x\1/', name)] if m]
    if not sizes or 'FromRGB_lod0/weight' not in variables:
        raise ValueError('TF-era StyleGAN1 discriminator: no <res>x<res>/ or FromRGB_lod0 variables')
    return dict(c_dim=int(settings.get('label_size', 0)), img_resolution=max(sizes),
                img_channels=int(variables['FromRGB_lod0/weight'].shape[2]),
                channel_base=2 * int(settings.get('fmap_base', 8192)), channel_max=int(settings.get('fmap_max', 512)),
                mbstd_group_size=int(settings.get('mbstd_group_size', 4)))


def convert_tf_discriminator(record):
    """A TF-era D_basic record -> our networks_stylegan1.Discriminator with the same weights (and lod)."""
    from training import networks_stylegan1
    variables = {name: np.asarray(value, dtype=np.float32) for name, value in record.variables}
    kwargs = discriminator_kwargs(record, variables)
    from training.tf_legacy import _construct_within_budget
    D = _construct_within_budget(networks_stylegan1.Discriminator, kwargs, variables, 'StyleGAN1 discriminator')
    return load_variables(D, variables, discriminator_rule(kwargs['img_resolution']), network='discriminator')

#----------------------------------------------------------------------------
