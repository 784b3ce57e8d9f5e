from django.core.management.base import BaseCommand
from django.db import connection, transaction

from providers.crypto import reencrypt
from providers.models import Provider


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider credential with the first GREENGATE_ENCRYPTION_KEY "
        "(after putting a new key first); prints how many were rotated."
    )

    def handle(self, *args, **options) -> None:
        table = Provider._meta.db_table
        rotated = 0
        # On the raw ciphertext: the model field would decrypt, and saving it would encrypt anew anyway, but this
        # also proves each token is readable before anything is written.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT id, api_key FROM {table} WHERE api_key <> '' FOR UPDATE")
            for pk, token in cursor.fetchall():
                cursor.execute(f"UPDATE {table} SET api_key = %s WHERE id = %s", [reencrypt(token), pk])
                rotated += 1
        self.stdout.write(str(rotated))
