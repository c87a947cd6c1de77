"""Kill drill: kill -9 a tiny CPU training run at random moments (some of them in the middle of a snapshot or image
write), then check what a crash leaves behind and that `--resume=<run dir>` continues exactly.

    python bench/kill_drill.py [--kills=20] [--seed=0] [--out=bench/results/kill_drill.json]

Per kill point:
  * every named file in the run directory is complete: each network-snapshot-*.pkl loads with the safe loader,
    each *.png decodes, each line of stats.jsonl is JSON (partial files only under temporary names);
  * the next start in that run directory (a resume from it, or a fresh start when no snapshot was written yet)
    removes the temporary files of the killed process;
  * the resumed run ends with G, G_ema and D equal (torch.equal, every parameter and buffer) to those of a run
    that was never interrupted.
Then the multi-process cases of `train.py --gpus=2` (gloo on CPU): kill -9 of the launcher (the ranks must
notice and exit, and remove the rendezvous folder) and kill -9 of one rank (everything must end), timed.

tests/test_kill_drill.py (marked slow) runs a shorter drill; this script writes the figures to a JSON file.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, 'tests')
sys.path[:0] = [REPO_ROOT, TESTS_DIR]

import dnnlib  # noqa: E402

TOTAL_TICKS = 4         # Tiny run: ticks 0..3, a snapshot and a fakes image at every tick.
PAUSE_MARKER = 'KILL-DRILL-PAUSED'
TEMP_REGEX = re.compile(dnnlib.util.TEMP_FILE_REGEX)

#----------------------------------------------------------------------------
# The run being killed: a child process that trains the tiny configuration of tests/training_helpers.py.

def drill_options(data, run_dir, resume=False):
    from training_helpers import tiny_options
    return tiny_options(data, run_dir, total_ticks=TOTAL_TICKS, network_snapshot_ticks=1, image_snapshot_ticks=1,
                        resume_pkl=run_dir if resume else None)


def _pausing_writer(real_write, kind, index):
    """write_file_atomic that, at the index-th write of a *.{kind} file, writes half the bytes, says so on stdout
    and waits to be killed."""
    count = [0]

    def write(path, write_fn, mode='wb'):
        if not path.endswith('.' + kind) or 'b' not in mode:
            return real_write(path, write_fn, mode)
        count[0] += 1
        if count[0] != index:
            return real_write(path, write_fn, mode)
        buffer = io.BytesIO()
        write_fn(buffer)
        data = buffer.getvalue()

        def half_then_wait(f):
            f.write(data[:len(data) // 2])
            f.flush()
            print(f'{PAUSE_MARKER} {path}', file=sys.__stdout__, flush=True)
            time.sleep(60)
            f.write(data[len(data) // 2:])
        return real_write(path, half_then_wait, mode)
    return write


def child_main(data, run_dir, pause):
    """Entry point of the killed process: train from scratch, optionally pausing inside one file write."""
    import torch
    torch.set_num_threads(1)
    from training import run_outputs, training_loop
    if pause:  # Snapshots are written by training_loop, images by run_outputs: one counting writer for both.
        kind, index = pause.split(':')
        training_loop.write_file_atomic = run_outputs.write_file_atomic = _pausing_writer(
            dnnlib.util.write_file_atomic, kind, int(index))
    setup_outputs = training_loop.setup_outputs

    def setup_outputs_then_ready(*args):  # Random kill delays count from the first training iteration.
        setup_outputs(*args)
        print('KILL-DRILL-READY', file=sys.__stdout__, flush=True)
    training_loop.setup_outputs = setup_outputs_then_ready
    with contextlib.redirect_stdout(io.StringIO()):
        training_loop.training_loop(**drill_options(data, run_dir))
    print('KILL-DRILL-DONE', flush=True)

#----------------------------------------------------------------------------
# Checks.

def temp_files(run_dir):
    return sorted(name for name in os.listdir(run_dir) if TEMP_REGEX.fullmatch(name))


def check_complete_files(run_dir):
    """Load every named file of the run directory; raise AssertionError naming a partial one."""
    import PIL.Image
    from torch_utils import safe_pickle
    from training.network_families import FAMILIES
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if TEMP_REGEX.fullmatch(name):
            continue
        if name.endswith('.pkl'):
            safe_pickle.load_network_pkl(path, families=FAMILIES)
        elif name.endswith('.png'):
            with PIL.Image.open(path) as image:
                image.load()
        elif name == 'stats.jsonl':
            with open(path) as f:
                for line in f:
                    json.loads(line)


def tensors(module):
    return dict(module.named_parameters()) | dict(module.named_buffers())


def assert_same_networks(reference, result):
    """torch.equal on every parameter and buffer of G, G_ema and D; returns the number of tensors compared."""
    import torch
    count = 0
    for name in ('G', 'G_ema', 'D'):
        ref_tensors, got = tensors(reference[name]), tensors(result[name])
        assert ref_tensors.keys() == got.keys(), name
        for key, value in ref_tensors.items():
            assert torch.equal(value, got[key]), f'{name}.{key} differs from the uninterrupted run'
            count += 1
    return count


def latest_snapshot(run_dir):
    from training import training_loop
    try:
        return training_loop.load_snapshot(training_loop.find_latest_snapshot(run_dir))
    except FileNotFoundError:
        return None

#----------------------------------------------------------------------------
# One kill point.

def _start_child(data, run_dir, pause):
    code = (f'import sys; sys.path[:0] = {[REPO_ROOT, TESTS_DIR]!r}; import kill_drill; '
            f'kill_drill.child_main({data!r}, {run_dir!r}, {pause!r})')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.path.join(REPO_ROOT, 'bench'))
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=REPO_ROOT)


def _wait_for_line(process, prefix, timeout):
    """Read the child's stdout until a line starts with `prefix`; False at EOF (the child ended) or timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            return False
        if line.startswith(prefix):
            return True
    return False


def kill_point(workdir, data, reference, index, delay=None, pause=None):
    """Run, kill -9 after `delay` seconds of training or inside the write `pause` ('pkl:2'), check, resume, compare.

    Returns a dict of what happened (for the results table)."""
    from training_helpers import run_quietly
    from training import training_loop
    run_dir = os.path.join(workdir, f'kill{index:02d}')
    os.makedirs(run_dir)
    child = _start_child(data, run_dir, pause)
    try:
        if pause is not None:  # reals.png and fakes_init.png are written before the first iteration.
            killed = _wait_for_line(child, PAUSE_MARKER, timeout=180)
        else:
            killed = _wait_for_line(child, 'KILL-DRILL-READY', timeout=180)
            time.sleep(delay)
            killed = killed and child.poll() is None
        if killed:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=300)
    finally:
        if child.poll() is None:  # The drill itself failed or was interrupted: leave no process behind.
            child.kill()
            child.wait()
    left = temp_files(run_dir)
    check_complete_files(run_dir)
    snapshot = latest_snapshot(run_dir)
    done_nimg = snapshot[training_loop.RESUME_STATE_KEY]['cur_nimg'] if snapshot is not None else 0
    final_nimg = reference[training_loop.RESUME_STATE_KEY]['cur_nimg']
    if done_nimg < final_nimg:  # The next start in this run directory: resume it, or start afresh.
        run_quietly(**drill_options(data, run_dir, resume=snapshot is not None))
    stale = temp_files(run_dir)
    assert not stale, f'kill point {index}: stale temporary files after the next start: {stale}'
    compared = assert_same_networks(reference, latest_snapshot(run_dir))
    return dict(index=index, how=f'in {pause} write' if pause else f'after {delay:.2f} s', killed=killed,
                temp_files_left_by_kill=left, resumed_from_nimg=done_nimg if snapshot is not None else None,
                tensors_equal=compared)


def kill_points(workdir, data, num_kills, seed, log=print):
    """The reference run, then num_kills kill points: a third inside snapshot/image writes, the rest at random.

    Runs in this process use one thread, as the killed children do: CPU results are bit-exact only for the same
    number of threads (the order of float sums in a matmul depends on it)."""
    import torch
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _kill_points(workdir, data, num_kills, seed, log)
    finally:
        torch.set_num_threads(num_threads)


def _kill_points(workdir, data, num_kills, seed, log):
    from training_helpers import run_quietly
    ref_dir = os.path.join(workdir, 'reference')
    start = time.time()
    run_quietly(**drill_options(data, ref_dir))
    ref_sec = time.time() - start
    reference = latest_snapshot(ref_dir)
    rnd = random.Random(seed)
    rows = []
    for index in range(num_kills):
        if index % 3 == 2:
            kind = 'pkl' if index % 2 else 'png'
            pause = f'{kind}:{rnd.randint(1, TOTAL_TICKS)}'
            row = kill_point(workdir, data, reference, index, pause=pause)
        else:
            row = kill_point(workdir, data, reference, index, delay=rnd.uniform(0, 0.8 * ref_sec))
        log(f'kill {index:2d} {row["how"]:<18s} killed={row["killed"]!s:<5s} temp files left '
            f'{len(row["temp_files_left_by_kill"])}, resumed from '
            f'{row["resumed_from_nimg"] if row["resumed_from_nimg"] is not None else "scratch"} images: '
            f'{row["tensors_equal"]} tensors equal')
        rows.append(row)
    return dict(reference_run_sec=ref_sec, points=rows)

#----------------------------------------------------------------------------
# train.py --gpus=2: kill -9 of the launcher, and of one rank.

def _process_gone(proc):
    import psutil
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start_two_process_run(workdir, data, name):
    import psutil
    outdir = os.path.join(workdir, name)
    tmpdir = os.path.join(workdir, name + '-tmp')
    os.makedirs(tmpdir)
    args = [sys.executable, os.path.join(REPO_ROOT, 'train.py'), f'--outdir={outdir}', f'--data={data}',
            '--cfg=stylegan2', '--gpus=2', '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1',
            '--mbstd-group=2', '--aug=noaug', '--metrics=none', '--kimg=1000', '--tick=1', '--snap=1000',
            '--workers=0', '--device=cpu', '--fp32=1']
    env = dict(os.environ, OMP_NUM_THREADS='1', TMPDIR=tmpdir)
    launcher = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:  # Training has started once rank 0 logged its first tick.
        logs = [os.path.join(outdir, d, 'log.txt') for d in (os.listdir(outdir) if os.path.isdir(outdir) else [])]
        if any(os.path.isfile(p) and 'tick 0 ' in open(p).read() for p in logs):
            break
        if launcher.poll() is not None:
            raise RuntimeError(f'train.py --gpus=2 ended early: {launcher.stderr.read()[-2000:]}')
        time.sleep(0.2)
    else:
        raise RuntimeError('train.py --gpus=2 did not start training within 180 s')
    ranks = [proc for proc in psutil.Process(launcher.pid).children(recursive=False)
             if 'spawn_main' in ' '.join(proc.cmdline()) and 'resource_tracker' not in ' '.join(proc.cmdline())]
    return launcher, ranks, tmpdir


def _rendezvous_left(tmpdir):
    """What the run left in its private TMPDIR (torch's own inductor cache aside): the launcher's rendezvous
    folder, if nobody removed it."""
    return sorted(name for name in os.listdir(tmpdir) if not name.startswith('torchinductor'))


def _seconds_until_gone(procs, timeout):
    start = time.time()
    while time.time() - start < timeout:
        if all(_process_gone(proc) for proc in procs):
            return time.time() - start
        time.sleep(0.05)
    return None


def launcher_kill(workdir, data, timeout=60):
    """kill -9 the launcher of a 2-process run: seconds until both ranks ended, rendezvous folders left."""
    launcher, ranks, tmpdir = _start_two_process_run(workdir, data, 'launcher-kill')
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    seconds = _seconds_until_gone(ranks, timeout)
    for proc in ranks:  # Clean up after a failed drill.
        with contextlib.suppress(Exception):
            proc.kill()
    left = _rendezvous_left(tmpdir)
    return dict(num_ranks=len(ranks), seconds_until_ranks_gone=seconds, rendezvous_dirs_left=left)


def rank_kill(workdir, data, timeout=60):
    """kill -9 one rank of a 2-process run: seconds until the launcher and the other rank ended."""
    import psutil
    launcher, ranks, tmpdir = _start_two_process_run(workdir, data, 'rank-kill')
    ranks[-1].kill()
    seconds = _seconds_until_gone(ranks + [psutil.Process(launcher.pid)], timeout)
    if seconds is None:
        launcher.kill()
    launcher.wait()
    left = _rendezvous_left(tmpdir)
    return dict(num_ranks=len(ranks), seconds_until_all_gone=seconds, launcher_exit_code=launcher.returncode,
                rendezvous_dirs_left=left)

#----------------------------------------------------------------------------

def make_data(workdir, resolution=16):
    import pathlib
    from training_helpers import write_shapes_folder
    path = pathlib.Path(workdir) / f'shapes{resolution}'
    path.mkdir(exist_ok=True)
    return write_shapes_folder(path, count=24, resolution=resolution)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=20, help='number of kill -9 points')
    parser.add_argument('--seed', type=int, default=0, help='random seed of the kill points')
    parser.add_argument('--out', default=os.path.join(REPO_ROOT, 'bench', 'results', 'kill_drill.json'))
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix='kill-drill-') as workdir:
        data = make_data(workdir)
        results = kill_points(workdir, data, args.kills, args.seed)
        results['launcher_kill'] = launcher_kill(workdir, data)
        print(f'launcher kill -9: ranks gone after {results["launcher_kill"]["seconds_until_ranks_gone"]} s, '
              f'rendezvous folders left: {results["launcher_kill"]["rendezvous_dirs_left"]}')
        results['rank_kill'] = rank_kill(workdir, data)
        print(f'rank kill -9: all processes gone after {results["rank_kill"]["seconds_until_all_gone"]} s')
    results.update(kills=args.kills, seed=args.seed, total_sec=time.time() - start,
                   machine=dict(platform=platform.platform(), processor=platform.processor(),
                                cpus=os.cpu_count(), python=platform.python_version(), torch=torch.__version__))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    dnnlib.util.write_file_atomic(args.out, lambda f: json.dump(results, f, indent=2), mode='w')
    print(f'{args.kills} kill points in {results["total_sec"]:.0f} s; wrote {args.out}')


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        child_main(*sys.argv[2:5])
    else:
        main()
