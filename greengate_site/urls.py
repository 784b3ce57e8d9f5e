from django.contrib import admin
from django.urls import path

from gateway.transport.views import ChatCompletionsView, EmbeddingsView, ModelDetailView, ModelListView
from greengate_site.health import healthz

urlpatterns = [
    path("v1/chat/completions", ChatCompletionsView.as_view()),
    path("v1/embeddings", EmbeddingsView.as_view()),
    path("v1/models", ModelListView.as_view()),
    path("v1/models/<path:model>", ModelDetailView.as_view()),
    path("healthz", healthz),
    path("admin/", admin.site.urls),
]
