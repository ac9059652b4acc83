"""Stand-in for the document's Django model: each row is a line of pages.txt."""
import json


class _Manager:
    def create(self, url=None, info=None):
        row = {'url': url, 'info': info}
        with open('pages.txt', 'a', encoding='utf-8') as f:
            f.write(json.dumps(row, sort_keys=True) + '\n')
        return row


class PageInfo:
    objects = _Manager()
