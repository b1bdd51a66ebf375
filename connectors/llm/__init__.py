"""LLM connector: any OpenAI-compatible chat completions API, or a deterministic fake.

Action `complete`: LLMRequest -> LLMResponse. No side effect, so nothing is recorded in the fakes'
ledger.
"""
