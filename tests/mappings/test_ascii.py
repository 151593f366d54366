"""mappings/ascii.py: numbers read from the wire are ASCII digits; ids fit a BIGINT column."""

from __future__ import annotations

import pytest

from mappings.ascii import is_digits, row_id


@pytest.mark.parametrize("text", ["²", "¹²", "٢٠", "", " 1", "1 ", "-1", "1.0", "１"])
def test_what_is_not_ascii_digits(text: str) -> None:
    assert not is_digits(text)


def test_ascii_digits() -> None:
    assert is_digits("0") and is_digits("0123456789")


def test_row_id_fits_bigint() -> None:
    assert row_id("42") == 42 and row_id("9" * 18) == int("9" * 18)
    assert row_id("9" * 19) is None and row_id("²") is None and row_id("") is None
