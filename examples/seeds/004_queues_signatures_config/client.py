# Run with a worker that reads both queues:
#   liteq worker tasks.db -l info -Q celery,priority.high
from liteq import signature
from tasks import add, task

arg1, arg2 = 'a', 'b'

# 创建任务方法: apply_async and delay
r1 = task.apply_async(args=[arg1, arg2], kwargs={'kwarg1': 'x', 'kwarg2': 'y'})
r2 = task.delay(arg1, arg2, kwarg1='x', kwarg2='y')

# 指定添加到队列 (send to a queue); the document leaves out add's arguments
r3 = add.apply_async((2, 2), queue='priority.high')

# signature: a task call to be made later
s1 = signature('tasks.add', args=(2, 2), countdown=10)
s2 = add.subtask((2, 2), countdown=10)
s3 = add.s(2, 2, debug=True)
s4 = add.s(2, 2).set(countdown=1)
for s in (s1, s2, s3, s4):
    print(s, s.options)

# execute:
r4 = add.s(2, 2).delay()
args, kwargs, options = (2, 2), {}, {'countdown': 1}
r5 = add.subtask(args, kwargs, **options).apply_async()
print(add.s(2, 2)())  # 本进程内执行 (runs in this process, no worker)

for r in (r1, r2, r3, r4, r5):
    print(r.get(timeout=30))
