"""manage.py import_judgements <project-slug> <file.jsonl> --format hh: a dataset with its judgements, all or
nothing, with line numbers on errors."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.formats import ImportFormatError
from annotate.judgement_formats import FORMATS
from annotate.judgement_import import file_lines, judgements_import
from annotate.management.commands._import_errors import refused
from annotate.models import Project


class Command(BaseCommand):
    help = (
        "Import a preference dataset with its judgements (TRL preference rows, HH transcripts, Open-Assistant trees, "
        "Chatbot Arena battles, rated completions). Nothing is imported if any line is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="Project slug.")
        parser.add_argument("path", type=Path, help="JSONL file.")
        parser.add_argument("--format", required=True, choices=FORMATS, help="The file's shape (see README).")
        parser.add_argument(
            "--open-tasks",
            action="store_true",
            help="Also open the imported pairs as tasks for the project's labelers (to compare team and dataset).",
        )

    def handle(self, *args, project: str, path: Path, format: str, open_tasks: bool, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {project!r}.") from None
        if not path.is_file():
            raise CommandError(f"Cannot read {path}: no such file.")
        try:
            result = judgements_import(
                project=target, lines=file_lines(path), filename=path.name, format=format, open_tasks=open_tasks
            )
        except ImportFormatError as exc:
            raise refused(path, exc) from None
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        self.stdout.write(self.style.SUCCESS(f"{path.name}: {result.summary()}"))
