from tasks import fetch_page, parse_page, store_page_info, update_page_info

url = 'http://example.com/'

# 正确示范1: fetch_page -> parse_page -> store_page_info
update_page_info(url)

# 正确示范2. The document writes (url), which is not a tuple; (url,) is.
# Note: every signature in link=[...] gets fetch_page's result -- this is not
# a chain, so store_page_info receives the raw page here (as in Celery).
fetch_page.apply_async((url,), link=[parse_page.s(), store_page_info.s(url)])
