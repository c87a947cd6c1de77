"""Property-based fuzzing of the safe unpickler (issue 14): mutated valid tiny files of each kind it reads (network
snapshots, pickled detectors, CIFAR-10 batches; byte flips, opcode splices, truncations) either load or fail with
the loader's documented errors (UnsafePickleError, CorruptPickleError); never another exception, never an import,
never execution.

Bounded for CI: a fixed seed (derandomize), no example database, max_examples per property, a deadline per
example. The bases are small (a stand-in module source instead of our 50 KB one) so mutations land on structure.
"""

import io
import os
import pickle
import sys
import time

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip('hypothesis', reason='property-based fuzzing needs hypothesis '
                                 '(pip install -r requirements-test.txt)')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from metrics import metric_utils  # noqa: E402
from tests import hostile_payloads as hp  # noqa: E402
from torch_utils import persistence  # noqa: E402
from torch_utils import safe_pickle  # noqa: E402
from torch_utils.safe_pickle import CorruptPickleError, UnsafePickleError  # noqa: E402
from training import networks_stylegan2 as nets2  # noqa: E402
from training.network_families import FAMILIES

STANDIN_SRC = '\n'.join([
    'import torch',
    'class MappingNetwork(torch.nn.Module):',
    '    def forward(self, z, c, update_emas=False): pass',
    'class SynthesisBlock(torch.nn.Module): pass',
    'class FullyConnectedLayer(torch.nn.Module): pass', ''])

MARKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '.cache', 'fuzz-unpickler-MARKER')
SETTINGS = dict(derandomize=True, database=None, deadline=2000, suppress_health_check=list(HealthCheck))
COUNTS = {'loaded': 0, 'refused': 0}

#----------------------------------------------------------------------------
# Bases: tiny valid files of each kind the loader reads.

class _StandInPickler(pickle.Pickler):
    """Our persistent objects with a short stand-in module source (official-layout records)."""

    def reducer_override(self, obj):
        if not persistence.is_persistent(obj):
            return NotImplemented
        func, (meta,) = obj.__reduce__()
        return func, (dict(meta, module_src=STANDIN_SRC),)


def _standin_bytes(data, protocol):
    buffer = io.BytesIO()
    _StandInPickler(buffer, protocol=protocol).dump(data)
    return buffer.getvalue()


def _bases():
    torch.manual_seed(0)
    layer = nets2.FullyConnectedLayer(3, 2, activation='lrelu').eval().requires_grad_(False)
    snapshot = dict(G=layer, D=None, G_ema=layer, augment_pipe=None,
                    training_set_kwargs=dict(path='data.zip', xflip=False, resolution=16),
                    extra=dict(ints=[1, 2, 3], array=np.arange(4, dtype=np.float32), scalar=np.float64(2.5)))
    detector = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2, 2))
    cifar = {b'data': np.arange(12, dtype=np.uint8).reshape(2, 6), b'labels': [3, 7], b'filenames': [b'a.png', b'b']}
    return [('network', _standin_bytes(snapshot, protocol=4)), ('network', _standin_bytes(snapshot, protocol=3)),
            ('network', hp.tf_huge_network()), ('network', hp.exec_payloads(MARKER)['exec-dotted-torch-os.system']),
            ('detector', pickle.dumps(detector.eval(), protocol=4)), ('cifar', pickle.dumps(cifar, protocol=2))]


def _load(kind, blob):
    """The loader of each file kind: network snapshots, pickled detectors, CIFAR-10 batches."""
    if kind == 'network':
        return safe_pickle.load_network_pkl(io.BytesIO(blob), families=FAMILIES)
    if kind == 'detector':
        allowed, classes = metric_utils._detector_allow_list()
        return safe_pickle.load_pickle(io.BytesIO(blob), allowed=allowed, module_classes=classes)
    return safe_pickle.load_pickle(io.BytesIO(blob), allowed=safe_pickle.CIFAR_GLOBALS, encoding='bytes')


BASES = _bases()
for _kind, _blob in BASES[:1] + BASES[4:]:
    _load(_kind, _blob)  # Warm-up: torch imports its serialization helpers lazily.
OPCODES = sorted({op.code.encode('latin1') for op in __import__('pickletools').opcodes})

#----------------------------------------------------------------------------
# Mutations.

@st.composite
def mutated(draw):
    """A base with byte flips, spliced opcodes (a random opcode and argument bytes, or a chunk copied from
    elsewhere in the file), then possibly a truncation."""
    kind, base = draw(st.sampled_from(BASES))
    blob = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(['flip', 'opcode', 'chunk']))
        pos = draw(st.integers(0, len(blob) - 1))
        if kind == 'flip':
            blob[pos] = draw(st.integers(0, 255))
        elif kind == 'opcode':
            blob[pos:pos] = draw(st.sampled_from(OPCODES)) + draw(st.binary(max_size=8))
        else:
            start = draw(st.integers(0, len(blob) - 1))
            blob[pos:pos] = blob[start:start + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        blob = blob[:draw(st.integers(0, len(blob)))]
    return kind, bytes(blob)


def _load_and_classify(kind, blob):
    """'loaded' or 'refused'; any other outcome fails the test."""
    modules_before = set(sys.modules)
    try:
        _load(kind, blob)
        outcome = 'loaded'
    except (UnsafePickleError, CorruptPickleError):
        outcome = 'refused'
    # Standard codecs load lazily on first use (pickle's text opcodes name fixed ones); nothing else may appear.
    imported = {name for name in set(sys.modules) - modules_before if not name.startswith('encodings.')}
    assert not imported, f'the loader imported {imported}'
    assert not os.path.exists(MARKER), 'a payload ran'
    COUNTS[outcome] += 1
    return outcome

#----------------------------------------------------------------------------

def test_bases_load_or_are_refused_as_designed():
    outcomes = [_load_and_classify(kind, blob) for kind, blob in BASES]
    # The TF record's arguments would allocate a huge network; the exec payload names os.system.
    assert outcomes == ['loaded', 'loaded', 'refused', 'refused', 'loaded', 'loaded']


@settings(max_examples=2000, **SETTINGS)
@given(case=mutated())
def test_mutated_files_load_or_fail_with_the_documented_errors(case):
    _load_and_classify(*case)


@settings(max_examples=200, **SETTINGS)
@given(base=st.sampled_from(BASES), cut=st.floats(0, 1))
def test_every_truncation_is_a_documented_error(base, cut):
    kind, blob = base
    if int(len(blob) * cut) < len(blob):
        with pytest.raises((CorruptPickleError, UnsafePickleError)):
            _load(kind, blob[:int(len(blob) * cut)])


def test_fuzzing_figures(capsys):
    """Prints how many mutated files loaded and were refused in this session (for the issue's closing note)."""
    started = time.time()
    _load_and_classify(*BASES[0])
    with capsys.disabled():
        print(f'\nfuzz_unpickler: {COUNTS["loaded"]} loaded, {COUNTS["refused"]} refused, 0 other outcomes '
              f'({time.time() - started:.2f} s for the last load)')
    assert COUNTS['refused'] > 0

#----------------------------------------------------------------------------
