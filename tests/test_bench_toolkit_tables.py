"""The one markdown table formatter and its number formats, against exact expected text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.toolkit.tables import megabytes, number, percent, table


def test_table_exact_output():
    assert table(["size", "QPS"], [["1,400", "12,454"], ["1 M", "-"]]) == [
        "| size | QPS |",
        "|---|---|",
        "| 1,400 | 12,454 |",
        "| 1 M | - |",
    ]
    assert table(["only"], []) == ["| only |", "|---|"]
    with pytest.raises(ValueError, match="cells"):
        table(["a", "b"], [["1"]])


def test_number_formats():
    assert number(0.33254, 3) == "0.333"
    assert number(2.5) == "2.50"
    assert number(12453.87) == "12,454"
    assert number(-1500) == "-1,500"
    assert number(999.994, 2) == "999.99"
    assert number(np.float32(0.125), 1) == "0.1"  # round half to even, as format() does
    assert number(np.int64(1234567)) == "1,234,567"
    assert number(True) == "yes" and number(np.bool_(False)) == "no"
    assert number(None) == number(math.nan) == number(math.inf) == number(np.float64("nan")) == "-"
    assert number("cranfield") == "cranfield"


def test_percent_and_megabytes():
    assert percent(0.25) == "25.0%"
    assert percent(0.0123, 2) == "1.23%"
    assert percent(None) == percent(math.nan) == "-"
    assert megabytes(5_970_000) == "5.97"
    assert megabytes(1_234_500_000, 1) == "1,234.5"
    assert megabytes(None) == "-"
