from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgerentry",
            name="client_request_id",
            field=models.CharField(blank=True, default="", max_length=128),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="endpoint",
            field=models.CharField(default="chat.completions", max_length=32),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0, help_text="Deployments tried for this request."),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="providers_tried",
            field=models.CharField(blank=True, default="", help_text="Each attempt as provider:outcome, in order.", max_length=500),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="prompt_tokens",
            field=models.PositiveIntegerField(default=0, help_text="All input tokens, cached ones included."),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="completion_tokens",
            field=models.PositiveIntegerField(default=0, help_text="All output tokens, reasoning included."),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="cached_input_tokens",
            field=models.PositiveIntegerField(default=0, help_text="Input tokens read from a prompt cache."),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="cache_write_tokens",
            field=models.PositiveIntegerField(default=0, help_text="Input tokens written to a prompt cache."),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="reasoning_tokens",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="token_encoding",
            field=models.CharField(blank=True, default="", help_text="The tokenizer GreenGate counted with, when it counted.", max_length=32),
            preserve_default=False,
        ),
    ]
