"""One reading of a Kubernetes quantity for validation, provisioning and discovery."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from polycrate.quantity import QUANTITY_PATTERN, QuantityError, parse_quantity, quantity_to_bytes


@pytest.mark.parametrize(
    ("quantity", "size"),
    [
        ("1Ki", 2**10),
        ("50Mi", 50 * 2**20),
        ("50Gi", 50 * 2**30),
        ("2Ti", 2 * 2**40),
        ("1Pi", 2**50),
        ("3Ei", 3 * 2**60),
        ("3k", 3000),
        ("3K", 3000),
        ("500M", 500 * 10**6),
        ("100G", 100 * 10**9),
        ("1T", 10**12),
        ("1P", 10**15),
        ("2E", 2 * 10**18),
        ("7", 7),
        (4096, 4096),
    ],
)
def test_binary_and_decimal_suffixes_multiply_as_in_kubernetes(quantity: str | int, size: int) -> None:
    assert quantity_to_bytes(quantity) == size


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("1.5Gi", 1610612736), ("1.5Ki", 1536), (".5Mi", 2**19), ("2.", 2), ("0.25k", 250)],
)
def test_decimals_are_read_exactly(quantity: str, size: int) -> None:
    assert quantity_to_bytes(quantity) == size


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("1e3", 1000), ("1E6", 10**6), ("5e+2", 500), ("25e-1", Decimal("2.5")), ("1.5e9", 1500000000)],
)
def test_exponents_scale_by_powers_of_ten(quantity: str, value: Decimal | int) -> None:
    assert parse_quantity(quantity) == value


def test_a_capital_e_with_digits_is_an_exponent_and_without_them_exa() -> None:
    assert parse_quantity("1E6") == 10**6
    assert parse_quantity("1E") == 10**18


@pytest.mark.parametrize(("quantity", "value"), [("3500m", Decimal("3.5")), ("250u", Decimal("0.00025"))])
def test_milli_and_micro_read_as_fractions(quantity: str, value: Decimal) -> None:
    assert parse_quantity(quantity) == value


@pytest.mark.parametrize(("quantity", "size"), [("0.5", 1), ("1.1", 2), ("100m", 1), ("1001m", 2)])
def test_a_fraction_of_a_byte_rounds_up_as_kubernetes_does(quantity: str, size: int) -> None:
    assert quantity_to_bytes(quantity) == size


@pytest.mark.parametrize(
    "quantity",
    ["50gi", "50Gx", "Gi", "", "50 Gi", "-5Gi", "+5Gi", "1.2.3", "1e", "1Ki1", "1e1.5", "ten", "5KiB"],
)
def test_anything_else_is_refused_with_the_value_and_an_example(quantity: str) -> None:
    with pytest.raises(QuantityError, match=re.escape(f'"{quantity}" is not a quantity (use e.g. 50Gi)')):
        parse_quantity(quantity)
    assert not re.match(QUANTITY_PATTERN, quantity)


@pytest.mark.parametrize("quantity", ["8Ei", "1e19", "1e99999999", "1e-99999999"])
def test_values_beyond_kubernetes_int64_range_are_refused(quantity: str) -> None:
    with pytest.raises(QuantityError, match="out of the range of a Kubernetes quantity"):
        parse_quantity(quantity)


@pytest.mark.parametrize("quantity", ["50Gi", "1.5Ti", "1e9", "3500m", "10K", ".5", "7Ei"])
def test_the_crd_pattern_admits_exactly_what_the_parser_reads(quantity: str) -> None:
    assert re.match(QUANTITY_PATTERN, quantity)
    parse_quantity(quantity)
