from rest_framework.parsers import BaseParser

from annotate.services import import_limits


class JSONLinesParser(BaseParser):
    """A JSONL file sent as the raw request body. Returns the bytes; the import parses and validates them.

    At most `max_bytes + 1` bytes are read, so an oversized body is refused by the import's own size check
    without reading all of it."""

    media_type = "application/jsonl"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        if stream is None:
            return b""
        return stream.read(import_limits().max_bytes + 1)


class NDJSONParser(JSONLinesParser):
    media_type = "application/x-ndjson"
