"""Enqueue a task in the same transaction as your own rows: both commit, or neither.

Your peewee models live in the queue's SQLite file, so an order and the task
that confirms it are written together. If anything fails before the commit,
there is no order and no task; a worker can never see a task for an order that
was rolled back, or an order whose task was lost.

    python shop.py                     # place orders
    liteq worker shop.db --burst       # confirm them
    python shop.py report              # show what the worker did
"""

import sys

import peewee

from liteq import Celery

app = Celery("shop", broker="sqlite:///shop.db")


class Order(peewee.Model):
    item = peewee.CharField()
    quantity = peewee.IntegerField()
    confirmed = peewee.BooleanField(default=False)

    class Meta:
        database = app.database  # the queue's own file
        table_name = "shop_order"


@app.task
def send_confirmation(order_id):
    order = Order.get_by_id(order_id)
    order.confirmed = True
    order.save()
    return f"order {order.id}: {order.quantity} x {order.item} confirmed"


class PaymentDeclined(Exception):
    pass


def place_order(item, quantity, paid=True):
    """Create the order and queue its confirmation in one transaction."""
    with app.transaction():
        order = Order.create(item=item, quantity=quantity)
        result = send_confirmation.delay(order.id)
        if not paid:
            raise PaymentDeclined(f"payment for {item} declined")
    return order, result


def main():
    app.database.create_tables([Order])
    order, result = place_order("apple", 3)
    print(f"order {order.id} placed; its confirmation task is {result.state}")
    try:
        place_order("pear", 1, paid=False)
    except PaymentDeclined as exc:
        print(f"{exc}: the order and its task were rolled back together")
    print(f"orders in the database: {Order.select().count()}")


def report():
    for order in Order.select().order_by(Order.id):
        state = "confirmed" if order.confirmed else "waiting"
        print(f"order {order.id}: {order.quantity} x {order.item} ({state})")


if __name__ == "__main__":
    if sys.argv[1:] == ["report"]:
        report()
    else:
        main()
