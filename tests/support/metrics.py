"""Reading ``/metrics`` in tests: prometheus-client's own parser, one value per sample."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scraper"]


class Scraper:
    """Reads ``/metrics`` and gives one sample's value by its name."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def scrape(self) -> dict[str, float]:
        """Every sample: ``name`` -> value, a labelled one as ``name{label=value,...}``
        (labels sorted). The text format 0.0.4, and no credentials: the route has none."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200, response.text
        content_type = response.headers["content-type"]
        assert content_type == "text/plain; version=0.0.4; charset=utf-8", content_type
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
        return values
