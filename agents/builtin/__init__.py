"""The built-in agents; importing this package registers them."""

from agents.builtin import ad, campaign, content, email, social

__all__ = ["ad", "campaign", "content", "email", "social"]
