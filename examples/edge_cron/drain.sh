#!/bin/sh
# Run every task that is due in edge.db, then exit (see crontab.txt).
# Overlapping runs are safe: workers on one file never run a task twice.
cd "$(dirname "$0")" || exit 1
exec "${LITEQ:-liteq}" worker edge.db --burst -c 1 -l info
