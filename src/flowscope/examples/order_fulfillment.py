"""Order fulfillment: placed -> paid -> picked -> shipped -> delivered, cancellable until picked.

    >>> with Session(engine) as session:
    ...     [order] = seed_orders(session, 1)          # also stocks the catalog if it is empty
    ...     session.commit()
    ...     execution = start_workflow(session, OrderFulfillment, workflowable=order)
    ...     for action in ("pay", "pick", "ship", "deliver"):
    ...         execution.perform_action(action, user="warehouse")
    ...     order.status, order.tracking_number
    ('delivered', 'TRK-000001')

This is the *clean twin* of :mod:`.employee_onboarding`: the pick handler reads every line
of the order together with its product in ONE query (a join with ``contains_eager``), so its
query count does not grow with the number of lines, and the stock decrements are flushed as
one executemany UPDATE. A line that cannot be served raises :class:`OutOfStockError` and the
engine rolls the whole pick back (no stock is taken).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, Session, contains_eager, mapped_column, object_session, relationship

from flowscope.workflows import Workflow, WorkflowExecution, on, step

from ._base import ExampleBase, utcnow

__all__ = ["Order", "OrderFulfillment", "OrderLine", "OutOfStockError", "Product", "seed_orders",
           "seed_products"]


class Product(ExampleBase):
    """A catalog item with a stock level."""

    __tablename__ = "example_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int]
    stock: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<Product {self.sku} stock={self.stock}>"


class Order(ExampleBase):
    """A customer order; ``status`` mirrors the workflow step."""

    __tablename__ = "example_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="placed")
    total_cents: Mapped[int] = mapped_column(default=0)
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    picked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", order_by="OrderLine.id",
                                                  cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Order id={self.id} {self.customer!r} status={self.status!r}>"


class OrderLine(ExampleBase):
    """One product and quantity of an order, at the price when it was ordered."""

    __tablename__ = "example_order_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("example_orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("example_products.id"), index=True)
    quantity: Mapped[int]
    unit_price_cents: Mapped[int]

    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class OutOfStockError(Exception):
    """Picking an order needs more of some products than is in stock."""

    def __init__(self, order_id: int, shortages: list[str]):
        self.order_id = order_id
        self.shortages = list(shortages)
        super().__init__(f"order {order_id} cannot be picked, not enough stock: {'; '.join(shortages)}")


class OrderFulfillment(Workflow):
    """placed -> paid -> picked -> shipped -> delivered; cancel while placed or paid."""

    placed = step(pay="paid", cancel="cancelled")
    paid = step(pick="picked", cancel="cancelled")
    picked = step(ship="shipped")
    shipped = step(deliver="delivered")
    delivered = step()
    cancelled = step()

    @on("pay")
    def take_payment(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        order: Order = execution.workflowable
        session = _session(execution)
        # The total in one aggregate query, not by loading the lines.
        total = session.scalar(select(func.coalesce(func.sum(OrderLine.quantity * OrderLine.unit_price_cents), 0))
                               .where(OrderLine.order_id == order.id))
        order.total_cents = int(total or 0)
        order.payment_reference = str(context.get("payment_reference") or f"PAY-{order.id:06d}")
        order.status = "paid"
        order.paid_at = utcnow()
        execution.context_data["total_cents"] = order.total_cents

    @on("pick")
    def reserve_stock(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        order: Order = execution.workflowable
        session = _session(execution)
        # Every line with its product in one query. FOR UPDATE locks the product rows on
        # PostgreSQL until the action commits (SQLite has no row locks and omits the clause),
        # taken in product order so that concurrent picks cannot deadlock; populate_existing
        # makes the locked row's stock win over anything already in the identity map.
        lines = session.scalars(
            select(OrderLine)
            .join(OrderLine.product)
            .options(contains_eager(OrderLine.product))
            .where(OrderLine.order_id == order.id)
            .order_by(OrderLine.product_id, OrderLine.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        needed: Counter[int] = Counter()
        for line in lines:
            needed[line.product_id] += line.quantity
        products = {line.product_id: line.product for line in lines}
        shortages = [f"{p.sku} needs {needed[pid]}, {p.stock} in stock"
                     for pid, p in products.items() if p.stock < needed[pid]]
        if shortages:
            raise OutOfStockError(order.id, shortages)
        for pid, product in products.items():
            product.stock -= needed[pid]     # flushed as one executemany UPDATE
        order.status = "picked"
        order.picked_at = utcnow()
        execution.context_data["items_picked"] = sum(needed.values())

    @on("ship")
    def ship(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        order: Order = execution.workflowable
        order.tracking_number = str(context.get("tracking_number") or f"TRK-{order.id:06d}")
        order.status = "shipped"
        order.shipped_at = utcnow()
        execution.context_data["tracking_number"] = order.tracking_number

    @on("deliver")
    def deliver(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        order: Order = execution.workflowable
        order.status = "delivered"
        order.delivered_at = utcnow()

    @on("cancel")
    def cancel(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        order: Order = execution.workflowable
        if order.status == "paid":    # no stock was taken before picking; only money to give back
            execution.context_data["refund_cents"] = order.total_cents
        order.status = "cancelled"
        order.cancelled_at = utcnow()
        order.cancel_reason = None if context.get("reason") is None else str(context["reason"])


def _session(execution: WorkflowExecution) -> Session:
    session = object_session(execution)
    assert session is not None, "the engine only runs handlers for executions attached to a session"
    return session


_CATALOG = (("KB-01", "Mechanical keyboard", 8900), ("MS-02", "Wireless mouse", 2900),
            ("MN-03", "27-inch monitor", 27900), ("DK-04", "USB-C dock", 15900),
            ("HS-05", "Headset", 7900), ("CM-06", "Webcam", 6900), ("CH-07", "Desk chair", 34900),
            ("LP-08", "Laptop stand", 3900), ("CB-09", "Cable kit", 1900), ("LT-10", "Desk lamp", 4500),
            ("MP-11", "Mouse pad", 1200), ("SP-12", "Speakers", 9900))
_CUSTOMERS = ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises")


def seed_products(session: Session, stock: int = 1000) -> list[Product]:
    """Add the example catalog (12 products, ``stock`` each); flushed, not committed."""
    products = [Product(sku=sku, name=name, price_cents=price, stock=stock) for sku, name, price in _CATALOG]
    session.add_all(products)
    session.flush()
    return products


def seed_orders(session: Session, count: int, rng: random.Random | None = None,
                lines_per_order: int | tuple[int, int] = (1, 5)) -> list[Order]:
    """Add ``count`` placed orders of distinct products; stocks the catalog first if it is empty.

    ``lines_per_order`` is an exact number or an inclusive (low, high) range. Flushed, not committed.
    """
    rng = rng or random.Random(0)
    products = list(session.scalars(select(Product).order_by(Product.id))) or seed_products(session)
    low, high = (lines_per_order, lines_per_order) if isinstance(lines_per_order, int) else lines_per_order
    if high > len(products):
        raise ValueError(f"lines_per_order asks for up to {high} distinct products; the catalog has {len(products)}")
    orders = []
    for _ in range(count):
        chosen = rng.sample(products, rng.randint(low, high))
        orders.append(Order(customer=rng.choice(_CUSTOMERS), lines=[
            OrderLine(product=p, quantity=rng.randint(1, 3), unit_price_cents=p.price_cents) for p in chosen]))
    session.add_all(orders)
    session.flush()
    return orders
