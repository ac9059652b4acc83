# trigger.py
from tasks import add,test_mes  # noqa: F401 - the document says "from task import"
import sys

def pm(body):
    res = body.get('result')
    if body.get('status') == 'PROGRESS':
        sys.stdout.write('\r任务进度: {0}%'.format(res.get('p')))
        sys.stdout.flush()
    else:
        print('\r')
        print(res)
r = test_mes.delay()
print(r.get(on_message=pm, propagate=False))
