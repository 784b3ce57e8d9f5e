from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ledger import audit
from tenants.models import Plan
from tenants.services import plan_default, tenant_create


class Command(BaseCommand):
    help = "Create a tenant. Prints its slug."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")
        parser.add_argument("--plan", default="", help="Plan name (defaults to the 'default' plan).")

    def handle(self, *args, slug: str, name: str, plan: str, **options) -> None:
        actor = audit.cli_actor()
        if plan:
            try:
                chosen = Plan.objects.get(name=plan)
            except Plan.DoesNotExist:
                raise CommandError(f"No plan named {plan!r}.") from None
        else:
            chosen = plan_default(
                rate_limit_per_minute=settings.RATE_LIMIT_PER_MINUTE,
                tokens_per_minute=settings.TOKENS_PER_MINUTE,
                actor=actor,
            )
        try:
            tenant = tenant_create(slug=slug, name=name, plan=chosen, actor=actor)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())) from None
        self.stdout.write(tenant.slug)
