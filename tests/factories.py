from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from conductor.live.models import Event, LiveSession


class OrganizerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"organizer{n}")
    password = factory.django.Password("correct horse battery")

    @factory.post_generation
    def token(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            Token.objects.get_or_create(user=self)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Event {n}")

    @factory.post_generation
    def organizers(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create and extracted:
            self.organizers.add(*extracted)  # type: ignore[misc]


class LiveSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LiveSession

    event = factory.SubFactory(EventFactory)
    title = factory.Sequence(lambda n: f"Session {n}")
    topic = "Kubernetes at scale"
