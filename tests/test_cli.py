"""Every command refuses ``--opt=--``, which argparse alone reads as an empty list, not a value."""

import importlib

import pytest

CASES = [
    ("sweep", ["--config=--"]),
    ("sweep", ["--run-dir=--"]),  # argparse alone: a sweep into the default run directory
    ("stats", ["judgments.jsonl", "--out=--"]),  # argparse alone: writes next to the input
    ("meta", ["RUN", "--epsilon=--"]),
    ("dashboard", ["RUN", "--out=--"]),
    ("infer", ["RUN", "--obs=--", "--action=0"]),  # argparse alone: AttributeError
    ("serve", ["RUN", "--host=--"]),  # argparse alone: an empty list as the address, a TypeError
]


@pytest.mark.parametrize("module, argv", CASES)
def test_an_option_given_no_value_is_a_usage_error(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"augnes_jax.{module}").main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert "expected one value" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_repeatable_options_still_collect_their_values(tmp_path):
    from augnes_jax.sweep import build_parser

    args = build_parser().parse_args(["--allow-change", "epochs", "--allow-change", "seed"])
    assert args.allow_change == ["epochs", "seed"]
