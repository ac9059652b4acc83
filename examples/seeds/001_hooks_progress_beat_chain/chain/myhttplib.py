"""Stand-in for the HTTP client the document imports: no network needed."""


def get(url):
    return '<html><head><title>Page at {0}</title></head></html>'.format(url)
