from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from ledger import audit
from tenants.management.commands._arguments import refused, seconds
from tenants.services import api_key_by_prefix, api_key_rotate


class Command(BaseCommand):
    help = (
        "Replace a key with a new one (same tenant, name and limits). The old key keeps working for the grace "
        "period, then stops. Prints only the new secret on stdout; it cannot be shown again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix", help="The key's visible prefix (gg-…), as admin lists it.")
        parser.add_argument("--grace", type=seconds, default=0, help="Seconds the old key keeps working (default 0).")

    def handle(self, *args, prefix: str, grace: int, **options) -> None:
        try:
            old = api_key_by_prefix(prefix)
            new, secret = api_key_rotate(key=old, grace=timedelta(seconds=grace), actor=audit.cli_actor())
        except ValidationError as exc:
            raise refused(exc) from None
        ends = "now" if not grace else f"in {grace} s"
        self.stderr.write(f"rotated key {old.prefix}… to {new.prefix}…; the old key stops working {ends}")
        self.stdout.write(secret)
