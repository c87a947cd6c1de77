"""TF-era StyleGAN2 pickles as plain data: the stand-in record the safe unpickler builds for
`dnnlib.tflib.network.Network` objects, and the test that tells such a pickle apart.

A TF-era Network pickles as its state dict: `version` (>= 4), `name`, `static_kwargs` (the arguments of its build
function), `build_module_src`, `build_func_name`, `components` (sub-networks, e.g. `mapping` and `synthesis` of G)
and `variables` (a list of (name, numpy array)). `TFNetworkRecord` keeps those fields as data; the build source is
never executed and TensorFlow is not needed. Converting records into our networks is training/tf_legacy.py's job
(it builds training/ networks, which torch_utils must not import).
"""

import numpy as np

from torch_utils import pickle_checks

#----------------------------------------------------------------------------
# The stand-in record.

_RECORD_FIELDS = ('version', 'name', 'static_kwargs', 'components', 'build_module_src', 'build_func_name',
                  'variables')


class TFNetworkRecord:
    """Stand-in for `dnnlib.tflib.network.Network`: the pickled fields as data (no graph, nothing executed)."""

    __slots__ = _RECORD_FIELDS

    @staticmethod
    def restore(record, state):
        """Fill `record` from a pickled Network state after checking every field's type."""
        if not isinstance(state, dict):
            raise TypeError(f'a TF-era network record has a {type(state).__name__} state, not a dict')
        version = state.get('version')
        if type(version) is not int or version < 4:
            raise ValueError(f'TF-era network record version {version!r} is not supported (need >= 4)')
        static_kwargs = state.get('static_kwargs') or {}
        components = state.get('components') or {}
        variables = state.get('variables') or []
        if not isinstance(static_kwargs, dict) or not all(isinstance(key, str) for key in static_kwargs):
            raise TypeError('TF-era network record: static_kwargs is not a dict with string keys')
        pickle_checks.check_plain_value(static_kwargs, 'TF-era network record', 'static_kwargs')
        if not isinstance(components, dict) or \
                not all(isinstance(key, str) and type(value) is TFNetworkRecord for key, value in components.items()):
            raise TypeError('TF-era network record: components is not a dict of networks')
        if not isinstance(variables, list) or not all(
                isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (np.ndarray, np.generic)) for item in variables):
            raise TypeError('TF-era network record: variables is not a list of (name, array)')
        record.version = version
        record.name = str(state.get('name') or '')
        record.static_kwargs = dict(static_kwargs)
        record.components = dict(components)
        record.build_module_src = str(state.get('build_module_src') or '')  # Kept for reference, never run.
        record.build_func_name = str(state.get('build_func_name') or '')
        record.variables = [(name, np.asarray(value)) for name, value in variables]

    def __setstate__(self, state):  # Used by the trusted (allow_exec) unpickler only.
        TFNetworkRecord.restore(self, state)


def is_tf_snapshot(data):
    """True for what a TF-era pickle holds: a TFNetworkRecord or a tuple of them (G, D, Gs)."""
    if type(data) is TFNetworkRecord:
        return True
    return isinstance(data, tuple) and len(data) > 0 and all(type(item) is TFNetworkRecord for item in data)
