import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from providers.bootstrap import bootstrap_providers
from tenants.models import Tenant
from tenants.services import api_key_create, plan_default, tenant_create

DEMO_TENANT = "demo"
CREDENTIALS_FILE = "first-run-credentials.txt"


def show_secret_once(text: str) -> Path | None:
    """To the terminal, never the log stream (stdout carries JSON logs and is often collected).

    Without a terminal (a container, CI) the text goes to a file only its owner can read; its path is returned.
    """
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(text)
        return None
    except OSError:
        path = Path(settings.DATA_DIR) / CREDENTIALS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        return path


class Command(BaseCommand):
    help = "Providers from the environment on every start; an admin and a demo tenant and key on the first."

    def handle(self, *args, **options) -> None:
        for change in bootstrap_providers():
            self.stderr.write(f"  {change}")
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        with transaction.atomic():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            plan = plan_default(
                rate_limit_per_minute=settings.RATE_LIMIT_PER_MINUTE, tokens_per_minute=settings.TOKENS_PER_MINUTE
            )
            tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(
                slug=DEMO_TENANT, name="Demo tenant", plan=plan
            )
            _, secret = api_key_create(tenant=tenant, name="demo")
        base = f"http://{settings.HOST}:{settings.PORT}"
        banner = (
            "\n"
            "  GreenGate is set up. These credentials are shown once; keep them.\n"
            f"    admin:    {base}/admin/   user: admin   password: {password}\n"
            f"    API key:  {secret}   (tenant '{tenant.slug}')\n"
            f"    try it:   curl {base}/v1/chat/completions -H 'Authorization: Bearer {secret}' \\\n"
            "                -H 'Content-Type: application/json' \\\n"
            f'                -d \'{{"model": "{settings.DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'\n\n'
        )
        saved = show_secret_once(banner)
        if saved is not None:
            self.stderr.write(f"  No terminal: the first-run admin password and demo key are in {saved} (mode 600).")
