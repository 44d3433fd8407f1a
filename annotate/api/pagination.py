from django.conf import settings
from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """`?page=2&page_size=200`; the page size is capped by REWARDLAB_API_MAX_PAGE_SIZE."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.REWARDLAB_API_MAX_PAGE_SIZE
