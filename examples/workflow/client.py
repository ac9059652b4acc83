"""A chain, a group and a chord of chains, waiting for each result.

Run in this folder:

    liteq worker tasks.db -c 2 -l info      # in another terminal
    python client.py
"""

from tasks import PAGES, count_words, fetch, report, total

from liteq import chain, chord, group

urls = sorted(PAGES)

# chain: each task's result is the first argument of the next one.
words = chain(fetch.s(urls[0]), count_words.s())()
print("chain:", words.get(timeout=30))

# group: parts run in parallel; results come back in the group's order.
counts = group(count_words.s(PAGES[url]) for url in urls)()
print("group:", counts.get(timeout=30))

# chord: a group, then one task called with the list of its results. The body
# runs once, when the last part finishes: a counter is updated in the same
# transaction as each part's result, so a chord never polls and never hangs.
header = [fetch.s(url) | count_words.s() for url in urls]
print("chord:", chord(header)(total.s()).get(timeout=30))

# `|` composes them too: a chord followed by one more task.
flow = chord(header, total.s()) | report.s("all pages")
print("chord | report:", flow().get(timeout=30))
