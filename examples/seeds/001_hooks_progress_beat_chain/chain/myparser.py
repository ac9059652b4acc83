"""Stand-in for the document's HTML parser."""
import re


def parse_document(page):
    match = re.search(r'<title>(.*?)</title>', page)
    return {'title': match.group(1) if match else None, 'length': len(page)}
