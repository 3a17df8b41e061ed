"""Money arithmetic in pixel-wsgi's own decimal context, never the host thread's.

:mod:`decimal` arithmetic rounds to the *current thread's* context, which a host
application is free to change (``decimal.getcontext().prec = 8`` is enough to make
``quantize`` of a nine-digit amount raise ``InvalidOperation``). Every sum, product
and rounding of money in pixel-wsgi goes through :data:`MONEY`, whose precision
holds any amount the parser accepts exactly, and which traps every inexact or
invalid operation instead of silently rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

#: The context of all money arithmetic: 40 significant digits (an amount has at most
#: 18 before the point and 2 after; a percentage at most 4 decimals), half-up rounding.
MONEY = Context(prec=40, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow])

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
_HUNDRED = Decimal(100)


def to_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to the cent."""
    return MONEY.quantize(amount, CENT)


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``percent`` percent of ``amount``, rounded half-up to the cent."""
    return to_cents(MONEY.divide(MONEY.multiply(amount, percent), _HUNDRED))


def add(total: Decimal, amount: Decimal) -> Decimal:
    """``total + amount``, exactly."""
    return MONEY.add(total, amount)


def money_sum(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``amounts`` (``0.00`` for none)."""
    total = ZERO
    for amount in amounts:
        total = MONEY.add(total, amount)
    return total


__all__ = ["CENT", "MONEY", "ZERO", "add", "format_money", "money_sum", "percent_of", "to_cents"]


def format_money(amount: Decimal) -> str:
    """An exact decimal string with at least two places (``12.5`` -> ``12.50``)."""
    # Quantizing only when it is exact keeps a stored third decimal visible.
    cents = to_cents(amount)
    shown = cents if amount == cents else amount
    return f"{shown:f}"
