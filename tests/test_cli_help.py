"""Every CLI's --help teaches: it ends with example command lines, its metavars read as values (RANGE, VEC2,
ANGLE, ... not PARSE_RANGE, TEXT or INTEGER), it does not talk about missing modules, and calc_metrics.py lists each
metric with one line."""

import re

import pytest
from click.testing import CliRunner

import calc_metrics
import dataset_tool
import gen_images
import gen_video
import legacy
import onnx_export
import projector
import style_mixing
import train
import translate
import viewer

COMMANDS = {'train.py': train.main, 'gen_images.py': gen_images.main, 'gen_video.py': gen_video.main,
            'dataset_tool.py': dataset_tool.main, 'calc_metrics.py': calc_metrics.calc_metrics,
            'legacy.py': legacy.main, 'style_mixing.py': style_mixing.main, 'projector.py': projector.main,
            'onnx_export.py': onnx_export.main, 'viewer.py': viewer.main, 'translate.py': translate.main}


def _help(command):
    result = CliRunner().invoke(command, ['--help'], terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize('script', sorted(COMMANDS))
def test_help_ends_with_example_command_lines(script):
    lines = [line.strip() for line in _help(COMMANDS[script]).splitlines() if line.strip()]
    examples = lines[lines.index('Examples:') + 1:]
    commands = [line for line in examples if line.startswith('python ')]
    assert commands and all(line.startswith(('python ', '#', '--')) for line in examples), examples
    assert lines[-1].startswith(('python ', '--')), lines[-1]
    assert any(line.startswith(f'python {script}') for line in commands)
    option_lines = [line for line in lines if line.startswith('--help')]
    assert option_lines and lines.index(option_lines[0]) < lines.index('Examples:')  # After the options.


@pytest.mark.parametrize('script', sorted(COMMANDS))
def test_metavars_read_as_values_and_no_help_talks_about_missing_modules(script):
    text = _help(COMMANDS[script])
    for bad in ('PARSE_', ' TEXT ', ' INTEGER ', 'when the metrics package', 'need training/', 'is present',
                'this checkout'):
        assert bad not in text, (script, bad)
    option_metavars = re.findall(r'^\s+(?:-\w, )?--[\w-]+ ([A-Z][A-Z0-9_|]+)', text, flags=re.M)
    assert all(metavar not in ('TEXT', 'INTEGER', 'FLOAT RANGE') for metavar in option_metavars), option_metavars


def test_gen_images_help_names_seed_translate_and_rotate_values():
    text = _help(gen_images.main)
    assert re.search(r'--seeds RANGE', text) and re.search(r'--translate VEC2', text)
    assert re.search(r'--rotate ANGLE', text)


def test_calc_metrics_help_lists_every_metric_with_one_line():
    from metrics import metric_main
    text = _help(calc_metrics.calc_metrics)
    assert sorted(calc_metrics.METRIC_SUMMARIES) == sorted(metric_main.list_valid_metrics())
    for metric in metric_main.list_valid_metrics():
        line = next(line for line in text.splitlines() if line.strip().startswith(metric + ' '))
        assert len(line.split(None, 1)[1]) > 20, line
