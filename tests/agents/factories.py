from __future__ import annotations

import factory

from agents.models import AgentRun
from tests.factories import OrganizerFactory


class AgentRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentRun

    organizer = factory.SubFactory(OrganizerFactory)
    agent = "content"
    agent_version = "1"
    intent = "generate-draft"
    input = factory.LazyFunction(lambda: {"topic": "AI"})
