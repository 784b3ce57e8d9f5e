from django.core.management.base import BaseCommand, CommandError

from ledger import audit
from tenants.models import Tenant
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant. Prints only the new secret on stdout; it cannot be shown again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="The tenant's slug.")
        parser.add_argument("--name", default="cli", help="What the key is for.")

    def handle(self, *args, slug: str, name: str, **options) -> None:
        try:
            tenant = Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug {slug!r}.") from None
        key, secret = api_key_create(tenant=tenant, name=name, actor=audit.cli_actor())
        self.stderr.write(f"created key {key.prefix}… for tenant {tenant.slug}")
        self.stdout.write(secret)
