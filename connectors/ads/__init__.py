"""Ads connector: channel performance and daily budgets, over an HTTP API or a deterministic fake.

The real client expects this API at ADS_BASE_URL, with `Authorization: Bearer <ADS_API_KEY>` on
every request and JSON bodies:

- `GET {ADS_BASE_URL}/v1/performance?channels=a,b&days=7`
  -> 200 `{"channels": [{"channel", "impressions", "clicks", "conversions", "spend"}, ...]}`,
  totals over the last `days` days, one entry per requested channel.
- `POST {ADS_BASE_URL}/v1/budgets` `{"channel": str, "daily_budget": float}`, with an
  `Idempotency-Key` header -> 200 `{"channel", "daily_budget", "previous_budget"}`.

Errors follow connectors.http: 429 and 5xx are retryable, other 4xx are not. Actions:
`performance` (AdPerformanceRequest -> AdPerformanceResponse) and `set_budget`
(BudgetChangeRequest -> BudgetChangeResponse, a side effect).
"""
