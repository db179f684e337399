"""serving/pricing.py: what an answer costs, and the worst case a request may cost."""

import pytest

from agentdeploy.serving.pricing import Usage, cost_usd, worst_case_usd
from agentdeploy.tokens import TokenPrices


def test_cost_prices_cache_writes_by_ttl_and_reads():
    p = TokenPrices(input=1e-6, output=5e-6, cache_write_5m=1.25e-6, cache_write_1h=2e-6, cache_read=1e-7)
    u = Usage(input_tokens=100, output_tokens=10, cache_write_5m=1000, cache_write_1h=2000, cache_read=5000)
    assert cost_usd(u, p) == pytest.approx(100e-6 + 50e-6 + 1250e-6 + 4000e-6 + 500e-6)
    assert worst_case_usd(100, 10, p) == pytest.approx(100 * 2e-6 + 10 * 5e-6)
