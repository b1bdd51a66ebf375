"""Slack connector: an incoming webhook (SLACK_WEBHOOK_URL), or a deterministic fake.

Action `post_message`: SlackRequest -> SlackResponse.
"""
