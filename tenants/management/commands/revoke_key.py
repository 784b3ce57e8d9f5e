from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from ledger import audit
from tenants.management.commands._arguments import refused
from tenants.services import api_key_by_prefix, api_key_revoke


class Command(BaseCommand):
    help = "Revoke a key: it stops working at once, on every instance."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix", help="The key's visible prefix (gg-…), as admin lists it.")

    def handle(self, *args, prefix: str, **options) -> None:
        try:
            key = api_key_revoke(key=api_key_by_prefix(prefix), actor=audit.cli_actor())
        except ValidationError as exc:
            raise refused(exc) from None
        self.stderr.write(f"revoked key {key.prefix}… ({key.name}) of tenant {key.tenant.slug}")
