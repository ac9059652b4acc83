# celeryconfig.py: the document's 定时任务 (periodic tasks) version, which adds
# CELERYBEAT_SCHEDULE to the 异步任务 (async tasks) version; a worker started
# without -B ignores the schedule.
from datetime import timedelta
from liteq.schedules import crontab  # celery.schedules in Celery

# 指定broker (liteq: a SQLite file; was redis://127.0.0.1:6379)
BROKER_URL = 'sqlite:///tasks.db'
# 指定backend (liteq: the same file; was redis://127.0.0.1:6379/0)
CELERY_RESULT_BACKEND = 'sqlite:///tasks.db'

# 指定时区
CELERY_TIMEZONE = 'Asia/Shanghai'

# 指定导入的任务模块
CELERY_IMPORTS = (
    'celery_app.task1',
    'celery_app.task2'
)

# 定时调度schedules
CELERYBEAT_SCHEDULE={
    'add-every-30-seconds':{
        'task':'celery_app.task1.add',
        'schedule':timedelta(seconds=30),  # 每30秒执行一次
        'args':(2,3)                        # 任务函数参数
    },

    'multiply-every-30-seconds':{
        'task':'celery_app.task2.multiply',
        'schedule':crontab(hour=14,minute=30), # 每天下午2点30分执行一次
        'args':(2,3)                            # 任务函数参数
    }

}
