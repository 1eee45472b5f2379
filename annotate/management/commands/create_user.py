"""create_user NAME --role annotator|admin|researcher [--project SLUG]: prints the password and API token."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.models import Project, Role
from annotate.services import user_create


class Command(BaseCommand):
    help = "Create a user with a role (and optionally a project membership); prints the API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--project", metavar="SLUG", help="also make the user a member of this project")
        parser.add_argument("--password", help="the password to set (default: a random one, printed)")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"No project with slug {options['project']!r}.")
        try:
            user, password, token = user_create(
                username=options["name"],
                role=options["role"],
                password=options["password"],
                project=project,
                email=options["email"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(f"created {options['role']} {user.get_username()} with password {password}")
        self.stdout.write(token)
