"""The REST API researchers and labeling clients use, mounted at /api/ (see README, "REST API").

One view per operation, each with its own input and output serializer; writes go through `annotate.services`
and reads through `annotate.selectors` (and `annotate.api.selectors` for the reads only the API makes).
"""
