"""The project's network families: which module of ours holds the classes of each family the safe loaders read.

Passed to torch_utils.safe_pickle / safetensors_io as `families=FAMILIES` (torch_utils may not name training/
modules itself; see torch_utils/network_families.py). Registering a new family is one line in `FAMILY_MODULES`
(and, for pickles whose source differs from ours, a rule in safe_pickle.detect_family).
"""

import importlib
import types

from torch_utils.network_families import NetworkFamilies

FAMILY_MODULES = types.MappingProxyType({
    'stylegan3':        'training.networks_stylegan3',  # Official StyleGAN3 (and ours).
    'stylegan2':        'training.networks_stylegan2',  # Official SG2 of the StyleGAN3 repo (and ours).
    'stylegan2-ada':    'training.networks_stylegan2',  # Official SG2-ADA `training/networks.py`.
    'augment':          'training.augment',             # AugmentPipe of either official repo (and ours).
    'stylegan1':        'training.networks_stylegan1',  # Ours only (the official StyleGAN1 was TensorFlow).
    'dcgan':            'training.networks_dcgan',      # Ours only (Radford et al. 2016).
    'cyclegan':         'training.networks_cyclegan',   # Ours only (Zhu et al. 2017: ResnetGenerator, PatchGAN).
})

# Dataset classes a snapshot's training_set_kwargs may name (checked when reading safetensors snapshots).
DATASET_CLASSES = ('training.dataset.ImageFolderDataset',)

FAMILIES = NetworkFamilies(FAMILY_MODULES, importlib.import_module, DATASET_CLASSES)
