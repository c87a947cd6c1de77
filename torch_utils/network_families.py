"""The network-family table that the safe loaders receive from their caller (torch_utils never names training/).

The safe loaders (safe_pickle, safetensors_io) map a file's networks onto *our* classes by family ('stylegan2',
'stylegan3', 'augment', ...). Those classes live in training/, which torch_utils/ may not import, not even by a
module name in a string (DESIGN.md §4.4, tests/test_layering.py). So the upper layer builds a `NetworkFamilies`
(family -> module name, the function that imports such a module, the dataset classes a snapshot may name) and passes
it in as `families=`, the way `convert_tf=` is passed in for TF-era pickles. The project's table is
`training.network_families.FAMILIES`; legacy.load_network_pkl and the training loop pass it.

A `NetworkFamilies` is read-only once built: no loader can change what another one resolves.
"""

import types


class MissingFamiliesError(TypeError):
    """A loader needed the family table (the file holds networks of a family) but the caller passed none."""


class NetworkFamilies:
    """Read-only table: family name -> module name of our classes, plus how to import such a module.

    modules:         {family: 'package.module'}, e.g. {'stylegan2': 'training.networks_stylegan2'}.
    importer:        module name -> imported module (importlib.import_module); called only with names of `modules`,
                     never with a name read from a file.
    dataset_classes: dotted class names a snapshot's training_set_kwargs may name (safetensors snapshots).
    """

    __slots__ = ('_modules', '_importer', '_dataset_classes')

    def __init__(self, modules, importer, dataset_classes=()):
        for family, module_name in dict(modules).items():
            if not isinstance(family, str) or not isinstance(module_name, str):
                raise TypeError(f'family table entries must be str -> str, got {family!r} -> {module_name!r}')
        object.__setattr__(self, '_modules', types.MappingProxyType(dict(modules)))
        object.__setattr__(self, '_importer', importer)
        object.__setattr__(self, '_dataset_classes', tuple(dataset_classes))

    def __setattr__(self, name, value):
        raise AttributeError('a NetworkFamilies table is read-only; build a new one')

    @property
    def modules(self):
        """Read-only {family: module name}."""
        return self._modules

    @property
    def dataset_classes(self):
        return self._dataset_classes

    def import_family(self, family):
        """The module of `family`, imported on first use (loading an SG2 file does not import SG3 code).
        Raises KeyError for an unknown family and whatever the import raises (ImportError)."""
        return self._importer(self._modules[family])


def require(families, what):
    """`families`, or a MissingFamiliesError naming what needed it and how to pass it."""
    if families is None:
        raise MissingFamiliesError(f'{what}: the network family table is needed; pass '
                                   f'families=training.network_families.FAMILIES (legacy.load_network_pkl does)')
    if not isinstance(families, NetworkFamilies):
        raise TypeError(f'families must be a torch_utils.network_families.NetworkFamilies, got {type(families)!r}')
    return families
