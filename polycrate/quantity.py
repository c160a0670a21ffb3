"""Kubernetes quantities ("50Gi", "1.5Ti", "100G", "1e9", "3500m"): one grammar, one parser.

Validation (models and the CRD pattern), provisioning (the Harbor storage quota) and discovery
(a Node's memory and CPU) read a quantity through this module, so a value can never be accepted
by one and read differently by another. The rules are Kubernetes' resource.Quantity:
a non-negative decimal number, then at most one suffix: binary `Ki Mi Gi Ti Pi Ei`, decimal
`n u m k M G T P E`, or a decimal exponent `e3` / `E-2`. Like Kubernetes, a fraction of the
unit rounds up (`Quantity.Value()`). One addition: `K` is read as kilo next to Kubernetes' `k`,
because specs already spell `100K`. Signs are refused: every quantity here is a size.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkKMGTPE]|([eE][+-]?[0-9]+))?$"
"""The CRD `pattern` of a quantity field; `parse_quantity` accepts exactly these strings."""

BINARY_SUFFIXES: dict[str, int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
DECIMAL_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "K": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}

# Kubernetes stores a quantity's value in an int64; anything larger is refused there too.
MAX_QUANTITY = Decimal(2**63 - 1)

_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkKMGTPE]))?$"
)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity; the message names the value and an example."""


def parse_quantity(quantity: str | int) -> Decimal:
    """The exact value of a quantity: "1.5Gi" -> 1610612736, "3500m" -> 3.5, "1e3" -> 1000.

    An int (YAML's `storageQuota: 50`) is the quantity "50", as in Kubernetes.
    """
    text = str(quantity) if isinstance(quantity, int) and not isinstance(quantity, bool) else quantity
    found = _QUANTITY.match(text) if isinstance(text, str) else None
    if found is None:
        raise QuantityError(f'"{quantity}" is not a quantity (use e.g. 50Gi)')
    number = Decimal(found["number"])
    suffix = found["suffix"] or ""
    try:
        if found["exponent"]:
            value = number.scaleb(int(found["exponent"][1:]))
        elif suffix in BINARY_SUFFIXES:
            value = number * BINARY_SUFFIXES[suffix]
        else:
            value = number * DECIMAL_SUFFIXES[suffix]
    except ArithmeticError:  # an exponent beyond the range of Decimal, either way
        value = None
    if value is None or value > MAX_QUANTITY:
        raise QuantityError(
            f'"{quantity}" is out of the range of a Kubernetes quantity (0 to just under 8Ei)'
        )
    return value


def quantity_to_bytes(quantity: str | int) -> int:
    """Whole bytes (or whole units) of a quantity, a fraction rounded up: "50Gi" -> 53687091200."""
    return math.ceil(parse_quantity(quantity))
