"""A key given twice in params.yaml or a mapping is refused, naming both lines: PyYAML would
keep the last one and drop the other unsaid (a second ``train:`` section discards the first)."""

from __future__ import annotations

import pytest

from features.errors import ParcelriskError
from features.params import load_settings
from features.yamlio import load_unique


def test_a_section_given_twice_in_params_is_refused(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  seed: 1\nserve:\n  port: 3001\ntrain:\n  seed: 2\n")
    with pytest.raises(ParcelriskError) as err:
        load_settings(params, must_exist=True)
    assert "key 'train' given twice (lines 1 and 5)" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_key_given_twice_inside_a_section_is_refused(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  port: 3001\n  port: 3002\n")
    with pytest.raises(ParcelriskError, match="key 'port' given twice \\(lines 2 and 3\\)"):
        load_settings(params, must_exist=True)


def test_equal_keys_in_different_mappings_are_fine() -> None:
    assert load_unique("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n") == {
        "a": {"x": 1},
        "b": {"x": 2},
        "c": [{"x": 1}, {"x": 2}],
    }


def test_the_shipped_params_and_mappings_have_no_key_twice() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "params.yaml", *sorted((root / "data" / "examples").glob("*.yaml"))]
    files += sorted((root / "benchmarks").glob("*.yaml"))
    for path in files:
        load_unique(path.read_text(encoding="utf-8"))
