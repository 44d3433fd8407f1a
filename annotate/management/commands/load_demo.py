"""manage.py load_demo: the demo project (51 prompts, 4 candidate replies each) and one user per role."""

from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from annotate import services
from annotate.models import Project, TaskKind
from annotate.roles import RoleName

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_USERS = [
    ("labeler", "labeler-demo", RoleName.LABELER),
    ("researcher", "researcher-demo", RoleName.RESEARCHER),
    ("admin", "admin-demo", RoleName.ADMIN),
]


class Command(BaseCommand):
    help = "Load the demo project and create demo users (labeler, researcher, admin). Safe to run twice."

    def handle(self, *args, **options):
        with transaction.atomic():
            project = Project.objects.filter(slug="demo").first() or services.project_create(
                name="Demo assistant",
                slug="demo",
                description=(
                    "Prompts across an assistant's use cases, each with four replies of clearly different quality."
                ),
                guidelines=(DEMO_DIR / "guidelines.md").read_text(encoding="utf-8"),
                import_task_kinds=list(TaskKind.values),
                ranking_k=4,
                chat_enabled=True,  # live chat answers once a policy serves (train SFT on Runs, promote it)
            )
            data = (DEMO_DIR / "demo_prompts.jsonl").read_bytes()
            result = services.prompts_import(project=project, data=data, filename="demo_prompts.jsonl")
            for username, password, role in DEMO_USERS:
                services.user_create_with_role(username=username, password=password, role=role, update=True)
        self.stdout.write(
            self.style.SUCCESS(f"Demo project '{project.name}' (/projects/{project.slug}/): {result.summary()}")
        )
        self.stdout.write("Demo users (username / password):")
        for username, password, role in DEMO_USERS:
            self.stdout.write(f"  {role.value:<11} {username} / {password}")
