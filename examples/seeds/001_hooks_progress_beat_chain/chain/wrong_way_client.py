from wrong_way import update_page_info

result = update_page_info.delay('http://example.com/')
print('queued {0}'.format(result.id))
