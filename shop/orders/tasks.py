from django.core.mail import send_mail

from shop.celery import app
from shop.orders.models import Order
from shop.orders.services import confirmation_email


@app.task(autoretry_for=(OSError,), retry_backoff=True, max_retries=8)
def send_order_confirmation(order_id: int) -> None:
    order = Order.objects.get(pk=order_id)
    subject, body = confirmation_email(order)
    send_mail(subject, body, None, [order.email])
