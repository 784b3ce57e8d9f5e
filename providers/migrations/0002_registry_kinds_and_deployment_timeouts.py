import django.core.validators
from django.db import migrations, models


def copy_provider_timeouts(apps, schema_editor):
    """The provider's one timeout was meant for the whole call: it becomes each deployment's total."""
    Deployment = apps.get_model("providers", "Deployment")
    for deployment in Deployment.objects.select_related("provider"):
        total = deployment.provider.timeout_seconds
        deployment.total_timeout = total
        deployment.first_byte_timeout = min(total, deployment.first_byte_timeout)
        deployment.save(update_fields=["total_timeout", "first_byte_timeout"])


def copy_back(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for provider in Provider.objects.all():
        totals = list(provider.deployments.values_list("total_timeout", flat=True))
        provider.timeout_seconds = max(totals, default=120.0)
        provider.save(update_fields=["timeout_seconds"])


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="provider",
            name="kind",
            field=models.CharField(help_text="Which adapter speaks to it.", max_length=32),
        ),
        migrations.AddField(
            model_name="provider",
            name="options",
            field=models.JSONField(blank=True, default=dict, help_text="Adapter-specific settings, e.g. an API version."),
        ),
        migrations.AddField(
            model_name="deployment",
            name="connect_timeout",
            field=models.FloatField(
                default=5.0,
                help_text="Seconds to open a connection upstream.",
                validators=[django.core.validators.MinValueValidator(0.1), django.core.validators.MaxValueValidator(120)],
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="first_byte_timeout",
            field=models.FloatField(
                default=120.0,
                help_text="Seconds until the first piece of the answer: the first chunk of a stream, or the whole answer of a non-streamed request (it arrives at once).",
                validators=[django.core.validators.MinValueValidator(0.1), django.core.validators.MaxValueValidator(3600)],
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="total_timeout",
            field=models.FloatField(
                default=600.0,
                help_text="Seconds for the whole call, a stream included; past it the call is cut.",
                validators=[django.core.validators.MinValueValidator(0.1), django.core.validators.MaxValueValidator(7200)],
            ),
        ),
        migrations.RunPython(copy_provider_timeouts, copy_back),
        migrations.RemoveField(model_name="provider", name="timeout_seconds"),
    ]
