"""Response headers Django does not set itself: the Content-Security-Policy on every response.

A dozen lines rather than django-csp: the policy is one fixed string from settings (no nonces, no
per-view changes, no report endpoint), and Django already sends the other security headers
(Referrer-Policy, X-Content-Type-Options, X-Frame-Options, HSTS) from SecurityMiddleware and
XFrameOptionsMiddleware.
"""

from __future__ import annotations

from django.conf import settings


def content_security_policy_middleware(get_response):
    policy = settings.CONTENT_SECURITY_POLICY

    def middleware(request):
        response = get_response(request)
        # Set on every response, not only HTML: a JSON or text body opened in a tab is a page too.
        response.headers.setdefault("Content-Security-Policy", policy)
        return response

    return middleware
