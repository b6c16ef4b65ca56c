import json

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

import opbeat_agent


def index(request):
    return HttpResponse("ok")


def error(request):
    divisor = 0
    secret_password = "hunter2"  # noqa: F841 - to see local-variable capture and scrubbing
    return HttpResponse(str(1 / divisor))


@csrf_exempt
def checkout(request):
    quantity = int(request.POST["qty"])
    raise RuntimeError(f"card declined for {quantity} items")


@csrf_exempt
def orders(request):
    payload = json.loads(request.body)
    raise KeyError(payload["missing"])


def broken_template(request):
    return render(request, "broken.html", {"order": {"id": 7}})


def message(request, order_id):
    opbeat_agent.capture_message("Refund %s needs review", (order_id,), level="warning")
    return HttpResponse("noted")


def order_detail(request, pk):
    users = get_user_model().objects
    context = {"order": {"id": pk}, "buyers": users.filter(pk=pk).count(), "names": list(users.values_list("username", flat=True))}
    total = cache.get(f"order-total-{pk}")
    if total is None:
        with opbeat_agent.trace("price order", kind="code.custom"):
            total = sum(range(pk))
        cache.set(f"order-total-{pk}", total, 60)
    context["total"] = total
    return render(request, "order.html", context)


def legacy(request, code):
    return HttpResponse(code)


async def async_error(request):
    attempts = 3  # noqa: F841
    raise ValueError("async boom")


async def async_ok(request):
    return HttpResponse("async ok")
