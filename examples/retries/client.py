"""Queue three tasks and report every attempt.

Run in this folder:

    liteq worker tasks.db -l info      # in another terminal
    python client.py
"""

from tasks import always_down, charge, fetch_rate


def watch(name):
    def show(meta):
        if meta["status"] == "RETRY":
            print(f"{name}: retrying after {meta['result']!r}")

    return show


for name, result in [
    ("fetch_rate", fetch_rate.delay("USD")),
    ("charge", charge.delay(9.5)),
    ("always_down", always_down.delay()),
]:
    value = result.get(on_message=watch(name), propagate=False, timeout=60)
    print(f"{name}: {result.state} {value!r}")
