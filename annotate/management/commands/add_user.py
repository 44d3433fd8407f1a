"""manage.py add_user <username> --role labeler|researcher|admin [--password P | --no-password]"""

import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.roles import RoleName


class Command(BaseCommand):
    help = "Create a user with a role (labeler, researcher or admin)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in RoleName])
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="Prompted for when omitted (unless --no-password).")
        parser.add_argument("--no-password", action="store_true", help="Create the user with no usable password.")
        parser.add_argument("--update", action="store_true", help="Reset an existing user's role and password.")

    def handle(self, *args, username, role, email, password, no_password, update, **options):
        if password is None and not no_password:
            password = getpass.getpass(f"Password for {username}: ")
            if not password:
                raise CommandError("Empty password; use --no-password to create a user without one.")
        try:
            services.user_create_with_role(
                username=username, password=None if no_password else password, role=role, email=email, update=update
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(f"Invalid user: {detail}") from None
        self.stdout.write(self.style.SUCCESS(f"User {username!r} has the {role} role."))
