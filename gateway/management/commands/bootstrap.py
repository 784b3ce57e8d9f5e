import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from providers.bootstrap import bootstrap_providers
from tenants.models import Tenant
from tenants.services import api_key_create, plan_default, tenant_create

DEMO_TENANT = "demo"


class Command(BaseCommand):
    help = "Providers from the environment on every start; an admin and a demo tenant and key on the first."

    def handle(self, *args, **options) -> None:
        for change in bootstrap_providers():
            self.stdout.write(f"  {change}")
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        with transaction.atomic():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            plan = plan_default(rate_limit_per_minute=settings.RATE_LIMIT_PER_MINUTE)
            tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(
                slug=DEMO_TENANT, name="Demo tenant", plan=plan
            )
            _, secret = api_key_create(tenant=tenant, name="demo")
        base = f"http://{settings.HOST}:{settings.PORT}"
        self.stdout.write(
            "\n"
            "  GreenGate is set up. These credentials are shown once; keep them.\n"
            f"    admin:    {base}/admin/   user: admin   password: {password}\n"
            f"    API key:  {secret}   (tenant '{tenant.slug}')\n"
            f"    try it:   curl {base}/v1/chat/completions -H 'Authorization: Bearer {secret}' \\\n"
            "                -H 'Content-Type: application/json' \\\n"
            f'                -d \'{{"model": "{settings.DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'\n'
        )
