from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ledger import audit
from tenants.management.commands._arguments import positive_int, refused, usd
from tenants.models import Plan
from tenants.services import plan_default, tenant_create


class Command(BaseCommand):
    help = "Create a tenant, with limits of its own where given (else its plan's). Prints its slug."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")
        parser.add_argument("--plan", default="", help="Plan name (defaults to the 'default' plan).")
        parser.add_argument("--rpm", type=positive_int, help="Requests per minute.")
        parser.add_argument("--tpm", type=positive_int, help="Tokens per minute.")
        parser.add_argument("--daily-budget", type=usd, help="USD per UTC day.")
        parser.add_argument("--monthly-budget", type=usd, help="USD per calendar month.")
        parser.add_argument("--models", default="", help="Allowed models, comma-separated (default: the plan's).")

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
            tenant = tenant_create(
                slug=slug,
                name=name,
                plan=chosen,
                actor=actor,
                rate_limit_per_minute=options["rpm"],
                tokens_per_minute=options["tpm"],
                daily_budget_usd=options["daily_budget"],
                monthly_budget_usd=options["monthly_budget"],
                allowed_models=options["models"],
            )
        except ValidationError as exc:
            raise refused(exc) from None
        self.stdout.write(tenant.slug)
