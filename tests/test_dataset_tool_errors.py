"""dataset_tool.py error paths (issue 14.6-14.8): --dest that cannot be written, FIFOs in a source folder, a full
disk, an existing --dest (--force), bad images named by their file; and fuzzing over corrupted images and archives:
every run either succeeds or exits 1 with a message, never a traceback, and leaves no temporary file."""

import errno
import io
import os
import resource
import signal
import subprocess
import sys
import threading
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(*args):
    return CliRunner().invoke(dataset_tool.main, [str(arg) for arg in args])


def png_bytes(seed, size=8, fmt='PNG'):
    array = np.random.RandomState(seed).randint(0, 256, size=[size, size, 3], dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def make_source(folder, count=3):
    folder.mkdir()
    for idx in range(count):
        (folder / f'img{idx}.png').write_bytes(png_bytes(idx))
    return folder


def no_litter(folder):
    return [name for name in os.listdir(folder) if '.tmp' in name or name.startswith('.')]


def assert_message(result, *fragments):
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), f'uncaught {result.exception!r}'
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_dest_under_a_file_is_named(tmp_path):
    src = make_source(tmp_path / 'src')
    (tmp_path / 'afile').write_text('x')
    assert_message(run_tool('--source', src, '--dest', tmp_path / 'afile' / 'sub' / 'd.zip'),
                   f'{tmp_path / "afile"} is a file, not a folder')
    assert sorted(os.listdir(tmp_path)) == ['afile', 'src']


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0, reason='root can write into read-only folders')
def test_dest_in_a_read_only_folder_is_named(tmp_path):
    src = make_source(tmp_path / 'src')
    (tmp_path / 'ro').mkdir(mode=0o555)
    assert_message(run_tool('--source', src, '--dest', tmp_path / 'ro' / 'd.zip'), 'cannot write',
                   os.strerror(errno.EACCES))


def test_an_unwritable_temp_file_is_a_message(tmp_path, monkeypatch):
    # Stands in for a read-only folder (also when the tests run as root): opening the output fails with EACCES.
    src = make_source(tmp_path / 'src')
    real_init = zipfile.ZipFile.__init__

    def refuse(self, file, mode='r', *args, **kwargs):
        if mode == 'w':
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), file)
        return real_init(self, file, mode, *args, **kwargs)
    monkeypatch.setattr(zipfile.ZipFile, '__init__', refuse)
    assert_message(run_tool('--source', src, '--dest', tmp_path / 'd.zip'), 'cannot write',
                   os.strerror(errno.EACCES))
    assert sorted(os.listdir(tmp_path)) == ['src']


def test_a_fifo_named_like_an_image_is_skipped_with_a_message(tmp_path):
    src = make_source(tmp_path / 'src')
    os.mkfifo(src / 'x.png')
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_tool('--source', src, '--dest',
                                                                            tmp_path / 'd.zip')), daemon=True)
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive():
        with open(src / 'x.png', 'wb'):  # Unblock the reader so that the test process can end.
            pass
        pytest.fail('dataset_tool blocked on a FIFO')
    result = outcome['result']
    assert result.exit_code == 0, result.output
    assert f'skipping {src / "x.png"}: not a regular file' in result.output
    with zipfile.ZipFile(tmp_path / 'd.zip') as archive:
        assert sorted(archive.namelist()) == ['00000/img00000000.png', '00000/img00000001.png',
                                              '00000/img00000002.png', 'dataset.json']


def test_existing_dest_needs_force(tmp_path):
    src = make_source(tmp_path / 'src')
    dest = tmp_path / 'd.zip'
    dest.write_bytes(b'an earlier dataset')
    assert_message(run_tool('--source', src, '--dest', dest), 'already exists; add --force')
    assert dest.read_bytes() == b'an earlier dataset'
    assert run_tool('--source', src, '--dest', dest, '--force').exit_code == 0
    assert zipfile.is_zipfile(dest) and no_litter(tmp_path) == []


def test_force_replaces_an_earlier_folder_output_but_not_a_foreign_folder(tmp_path):
    src = make_source(tmp_path / 'src')
    assert run_tool('--source', src, '--dest', tmp_path / 'out').exit_code == 0
    assert_message(run_tool('--source', src, '--dest', tmp_path / 'out'), 'not empty')
    assert run_tool('--source', src, '--dest', tmp_path / 'out', '--force', '--max-images=1').exit_code == 0
    assert sorted(os.listdir(tmp_path / 'out' / '00000')) == ['img00000000.png']
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('keep')
    assert_message(run_tool('--source', src, '--dest', tmp_path / 'mine', '--force'), 'holds no dataset.json')
    assert os.listdir(tmp_path / 'mine') == ['notes.txt'] and no_litter(tmp_path) == []


def test_a_bad_image_is_named_without_python_object_reprs(tmp_path):
    src = make_source(tmp_path / 'src')
    (src / 'z.png').write_bytes(b'garbage')
    result = run_tool('--source', src, '--dest', tmp_path / 'd.zip')
    assert_message(result, f'{src / "z.png"} cannot be read as an image')
    assert 'BytesIO' not in result.output and '0x' not in result.output


def test_a_full_disk_names_the_file_and_leaves_no_temp_file(tmp_path):
    src = make_source(tmp_path / 'src', count=8)

    def limit_file_size():  # write() past 2000 bytes fails with EFBIG, as a full disk fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'dataset_tool.py'), '--source', str(src),
                             '--dest', str(tmp_path / 'new' / 'd.zip')], capture_output=True, text=True,
                            preexec_fn=limit_file_size, cwd=REPO_ROOT)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
    assert f'dataset_tool: cannot write {tmp_path / "new" / "d.zip"}: {os.strerror(errno.EFBIG)}' in result.stderr
    assert sorted(os.listdir(tmp_path)) == ['src']  # Neither the output, its temporary file, nor the new folder.


def test_temp_output_of_a_killed_run_is_removed_at_the_next_start(tmp_path):
    src = make_source(tmp_path / 'src')
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / f'd.zip.tmp{dead.pid}').write_bytes(b'half a zip')
    (tmp_path / f'other.zip.tmp{dead.pid}').write_bytes(b'not ours to judge')
    assert run_tool('--source', src, '--dest', tmp_path / 'd.zip').exit_code == 0
    assert sorted(os.listdir(tmp_path)) == ['d.zip', f'other.zip.tmp{dead.pid}', 'src']

#----------------------------------------------------------------------------
# Fuzzing: corrupted images and archives.

hypothesis = pytest.importorskip('hypothesis', reason='hypothesis is needed for the fuzzing tests')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        for idx in range(3):
            archive.writestr(f'img{idx}.png', png_bytes(idx))
        archive.writestr('dataset.json', '{"labels": [["img0.png", 0], ["img1.png", 1], ["img2.png", 0]]}')
    return buffer.getvalue()


VALID = {'png': png_bytes(5), 'jpg': png_bytes(6, fmt='JPEG'), 'zip': _valid_zip_bytes()}


@st.composite
def corrupted(draw, kind):
    """A valid file of `kind` with byte flips, a truncation, or a spliced/duplicated span."""
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    action = draw(st.sampled_from(['flip', 'truncate', 'splice']))
    if action == 'truncate':
        data = data[:draw(st.integers(0, len(data)))]
    elif action == 'splice':
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, len(data)))
        data = data[:start] + data[start:end] * draw(st.integers(0, 3)) + data[end:]
    return bytes(data)


def _fuzz_once(root, source_setup, dest_name):
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    source = source_setup(root)
    result = run_tool('--source', source, '--dest', root / dest_name)
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f'uncaught {type(result.exception).__name__}: {result.exception}'
    if result.exit_code == 1:
        assert 'dataset_tool: ' in result.output and not os.path.exists(root / dest_name)
    assert no_litter(root) == []


@FUZZ
@given(data=st.one_of(corrupted('png'), corrupted('jpg')))
def test_fuzz_corrupted_images_in_a_folder(tmp_path, data):
    def setup(root):
        src = make_source(root / 'src', count=2)
        (src / 'fuzz.png').write_bytes(data)
        return src
    _fuzz_once(tmp_path / 'case', setup, 'd.zip')


@FUZZ
@given(data=corrupted('zip'))
def test_fuzz_corrupted_zip_archives(tmp_path, data):
    def setup(root):
        (root / 'src.zip').write_bytes(data)
        return root / 'src.zip'
    _fuzz_once(tmp_path / 'case', setup, 'out')
