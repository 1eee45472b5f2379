"""Factories for the domain model. Tests build exactly the rows they need through these."""

from __future__ import annotations

import hashlib

import factory
from django.contrib.auth import get_user_model

from annotate import models


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("Test-pass-123")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    guidelines = "# Guidelines\nLabel the harm, not the words."


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = models.Role.ANNOTATOR


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Prompt

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"How do I do thing number {n}?")
    content_hash = factory.LazyAttribute(lambda o: _sha(o.text))


class QAPairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.QAPair

    prompt = factory.SubFactory(PromptFactory)
    project = factory.LazyAttribute(lambda o: o.prompt.project)
    response = factory.Sequence(lambda n: f"Here is answer number {n}.")
    source = "test-model"
    content_hash = factory.LazyAttribute(lambda o: _sha(o.prompt.text + "\x1f" + o.response))


class Stage1WorkItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.WorkItem

    qa_pair = factory.SubFactory(QAPairFactory)
    project = factory.LazyAttribute(lambda o: o.qa_pair.project)
    stage = models.Stage.CLASSIFY


def annotator(project: models.Project, username: str, role: str = models.Role.ANNOTATOR):
    """A user who is a member of `project` (an annotator unless `role` says otherwise): every call of
    the worker loop re-checks the caller's membership in the assignment's project."""
    user = UserFactory(username=username)
    MembershipFactory(project=project, user=user, role=role)
    return user
