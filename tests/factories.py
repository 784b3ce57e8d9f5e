import factory

from providers.models import Deployment, Provider
from tenants.models import Plan, Tenant


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ["name"]

    name = "standard"
    rate_limit_per_minute = 10_000


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    plan = factory.SubFactory(PlanFactory)


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"upstream-{n}")
    kind = "openai"
    base_url = "http://127.0.0.1:9/v1"
    api_key = "sk-upstream-test"
    allow_private_network = True  # the mock upstream listens on 127.0.0.1


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    model_name = "gpt-test"
    provider = factory.SubFactory(ProviderFactory)
    upstream_model = factory.LazyAttribute(lambda o: o.model_name)
    priority = 0
    weight = 1
    first_byte_timeout = 10.0
    total_timeout = 10.0
