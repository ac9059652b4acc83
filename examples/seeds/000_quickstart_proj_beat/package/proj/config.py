#!/usr/bin/env python
# -*- coding:utf-8 -*-

from __future__ import absolute_import

# liteq: both settings name the same SQLite file (was redis://127.0.0.1:6379/5 and /6).
CELERY_RESULT_BACKEND = 'sqlite:///tasks.db'
BROKER_URL = 'sqlite:///tasks.db'
