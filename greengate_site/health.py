from django.http import JsonResponse


async def healthz(request) -> JsonResponse:
    """Liveness: the process serves requests. It reads nothing, so a load balancer can poll it freely."""
    return JsonResponse({"status": "ok"})
