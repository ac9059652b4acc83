#trigger.py
import time

from tasks import add, add_fails

result = add.delay(4, 4)
while not result.ready():
    time.sleep(1)
print('task done: {0}'.format(result.get()))

# The second run: the task raises, so get() would re-raise KeyError here.
result = add_fails.delay(4, 4)
while not result.ready():
    time.sleep(1)
print('task failed: {0!r}'.format(result.get(propagate=False)))
