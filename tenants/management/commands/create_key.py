from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ledger import audit
from tenants.management.commands._arguments import positive_int, refused
from tenants.models import Tenant
from tenants.services import api_key_create

# Ten years: longer is a typo, not a plan.
MAX_LIFETIME_SECONDS = 10 * 365 * 86400


class Command(BaseCommand):
    help = "Create an API key for a tenant. Prints only the new secret on stdout; it cannot be shown again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="The tenant's slug.")
        parser.add_argument("--name", default="cli", help="What the key is for.")
        parser.add_argument("--rpm", type=positive_int, help="This key's own requests per minute.")
        parser.add_argument("--expires-in", type=positive_int, help="Seconds until the key stops working.")

    def handle(self, *args, slug: str, name: str, rpm: int | None, expires_in: int | None, **options) -> None:
        try:
            tenant = Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug {slug!r}.") from None
        if expires_in is not None and expires_in > MAX_LIFETIME_SECONDS:
            raise CommandError(f"--expires-in must be at most {MAX_LIFETIME_SECONDS} seconds (ten years).")
        expires_at = timezone.now() + timedelta(seconds=expires_in) if expires_in else None
        try:
            key, secret = api_key_create(
                tenant=tenant, name=name, expires_at=expires_at, rate_limit_per_minute=rpm, actor=audit.cli_actor()
            )
        except ValidationError as exc:
            raise refused(exc) from None
        self.stderr.write(f"created key {key.prefix}… for tenant {tenant.slug}")
        self.stdout.write(secret)
