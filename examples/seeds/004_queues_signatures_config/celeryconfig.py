# 配置文件 (configuration file)
BROKER_URL = 'sqlite:///tasks.db'  # liteq: a SQLite file (was amqp://)
CELERY_RESULT_BACKEND = 'sqlite:///tasks.db'  # liteq: the same file (was amqp://)

CELERY_TASK_SERIALIZER = 'json'
CELERY_RESULT_SERIALIZER = 'json'
CELERY_ACCEPT_CONTENT=['json']
CELERY_TIMEZONE = 'Europe/Oslo'
CELERY_ENABLE_UTC = True
