import time
from celery_app import task1
from celery_app import task2


print('开始', time.ctime())
task1.add.delay(2,3) # delay是apply_async的快捷方式
task2.multiply.apply_async(args=[2,3])

print('完成', time.ctime())
