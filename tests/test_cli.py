"""The command line as a whole (scaling_search/cli/): help and input errors answer without importing torch."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from scaling_search.cli import main
try:
    code = main({argv!r})
except SystemExit as exit_:
    code = exit_.code
print("torch" in sys.modules, code, file=sys.stderr)
"""


@pytest.mark.parametrize(("argv", "code"), [
    (["--help"], 0), (["run", "--help"], 0), (["ablate", "--help"], 0),
    (["run", "--budget", "lots"], 2), (["run", "--preset", "turbo"], 2), (["export", "--family", "9:1"], 2),
    (["train", "b9"], 2), (["cost", "b9"], 2), (["run", "--epochs", "0"], 2),
])
def test_help_and_input_errors_do_not_import_torch(argv, code):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == f"False {code}", proc.stderr


def test_every_flag_has_help_text():
    from scaling_search.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps subparsers only here
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, sub in commands.items() for action in sub._actions
               if action.help is None and action.dest != "help"]
    assert missing == []


def test_run_help_shows_examples():
    from scaling_search.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "examples:" in text and "scaling-search run --budget 2x" in text
