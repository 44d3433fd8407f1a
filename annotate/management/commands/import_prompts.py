"""manage.py import_prompts <project-slug> <file.jsonl>: all or nothing, with line numbers on errors."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate import services
from annotate.formats import ImportFormatError
from annotate.management.commands._import_errors import refused
from annotate.models import Project


class Command(BaseCommand):
    help = (
        "Import prompts (and candidate replies) from a JSONL file into a project. "
        "Nothing is imported if any line is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="Project slug.")
        parser.add_argument("path", type=Path, help="JSONL file: prompt/messages + completions, or HH chosen/rejected.")

    def handle(self, *args, project: str, path: Path, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {project!r}.") from None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        try:
            result = services.prompts_import(project=target, data=data, filename=path.name)
        except ImportFormatError as exc:
            raise refused(path, exc) from None
        self.stdout.write(self.style.SUCCESS(f"{path.name}: {result.summary()}"))
