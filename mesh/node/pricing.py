"""The price in force, recorded in every receipt the node signs.

Decision: each receipt's runtime claim carries ``price_micro``, the node's price
per task (``--price-micro``, micro-units) when it issued that receipt. So the
receipt log alone says what each task earned -- no side file to keep in step,
price changes between restarts are exact to the task, and the figure is signed by
the worker and seen by the client in the receipt it verifies, which makes it the
price both sides can point to. ``mesh receipts`` multiplies it out.

It is not part of the runtime *class* (device, dtype, torch, ...): code comparing
runtime classes compares those named keys. A receipt without ``price_micro``
(none issued by this version lacks it) counts as price 0.
"""

from __future__ import annotations

from mesh.core.messages import Receipt, RuntimeValue

PRICE_CLAIM = "price_micro"


def receipt_claims(price_micro: int) -> dict[str, RuntimeValue]:
    """What the node adds to every receipt's runtime claim."""
    return {PRICE_CLAIM: int(price_micro)}


def price_of(receipt: Receipt) -> int:
    """The price (micro-units per task) a receipt was issued at; 0 when it says none."""
    value = receipt.runtime.get(PRICE_CLAIM, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
