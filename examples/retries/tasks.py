"""Retries with exponential backoff, automatic and explicit.

A retry is a new row in the database due later, never a timer in a worker's
memory: a worker restart in between loses nothing.
"""

from liteq import Celery

app = Celery("tasks", broker="sqlite:///tasks.db")


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=True,  # wait 1 s, 2 s, 4 s, ... between attempts
    retry_backoff_max=60,  # never more than a minute
    retry_jitter=False,  # Celery's default (True) randomizes the waits
    max_retries=5,
)
def fetch_rate(self, currency):
    # Stands in for a flaky service: the first two attempts fail.
    if self.request.retries < 2:
        raise ConnectionError(f"rates service unreachable ({currency})")
    return {"currency": currency, "rate": 1.08}


@app.task(bind=True, max_retries=3)
def charge(self, amount):
    try:
        if self.request.retries == 0:  # the gateway times out once
            raise TimeoutError("payment gateway timed out")
    except TimeoutError as exc:
        # Explicit retry: choose the delay yourself (here 1 s, 2 s, 4 s).
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    return f"charged {amount:.2f} EUR"


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    max_retries=2,
    retry_backoff=True,
    retry_jitter=False,
)
def always_down(self):
    raise ConnectionError("still unreachable")
