"""The issue list of an app: what a member sees, filters, sorting, search, paging, charts."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from processing.models import Issue
from tests.dashboards.rows import hourly_create, issue_create, rejection_create


def titles_in_order(html: str) -> list[str]:
    return re.findall(r'<td class="title">\s*<a href="[^"]+">([^<]+)</a>', html)


def test_lists_issues_with_counts_users_and_hourly_bars(member):
    now = timezone.now()
    issue = issue_create(
        app=member.app, title="ZeroDivisionError: division by zero", culprit="bench.views.error",
        event_count=1234, users_count=56,
    )
    hourly_create(issue=issue, counts={now: 1000, now - timedelta(hours=3): 234})

    response = member.client.get(member.url("issue_list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "ZeroDivisionError: division by zero" in html
    assert "bench.views.error" in html
    assert ">1,234<" in html and ">56<" in html
    detail_url = member.url("issue_detail", issue.id)
    assert f'href="{detail_url}"' in html
    # The issue's sparkline has one bar per non-empty hour, titled with its count.
    sparkline = re.search(r'<svg class="chart sparkline".*?</svg>', html, re.S).group(0)
    assert sparkline.count("<rect") == 2
    assert "UTC: 1000</title>" in sparkline and "UTC: 234</title>" in sparkline
    # The app-wide errors-per-hour chart sums the issues' hours.
    app_chart = re.search(r'<svg class="chart app-chart[^"]*".*?</svg>', html, re.S).group(0)
    assert "Errors per hour: 1234 events" in app_chart


def test_app_chart_switches_between_24h_and_7d(member):
    issue = issue_create(app=member.app)
    hourly_create(issue=issue, counts={timezone.now(): 5, timezone.now() - timedelta(days=3): 7})

    day = member.client.get(member.url("issue_list")).content.decode()
    week = member.client.get(member.url("issue_list") + "?range=7d").content.decode()

    assert "Errors per hour: 5 events" in day
    assert "Errors per hour: 12 events" in week
    assert "12 events in the last 7d" in week


def test_most_common_exception_types_and_intake_drops(member):
    issue_create(app=member.app, title="KeyError: 'a'", exception_type="KeyError", event_count=10)
    issue_create(app=member.app, title="KeyError: 'b'", exception_type="KeyError", event_count=5)
    issue_create(app=member.app, title="ValueError: x", exception_type="ValueError", event_count=40)
    rejection_create(app=member.app, reason="rate_limited", count=1204)
    rejection_create(app=member.app, reason="too_large", count=3)

    html = member.client.get(member.url("issue_list")).content.decode()

    types = re.search(r'<table class="compact exception-types">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r"<code>(\w+)</code></td><td class=\"num\">([\d,]+)<", types) == [("ValueError", "40"), ("KeyError", "15")]
    drops = re.search(r'<table class="compact rejections">(.*?)</table>', html, re.S).group(1)
    assert "rate_limited</td><td class=\"num\">1,204<" in drops
    assert "too_large</td><td class=\"num\">3<" in drops


def test_sorts_by_last_seen_first_seen_and_count(member):
    now = timezone.now()
    issue_create(app=member.app, title="old-but-busy", event_count=100,
                 first_seen=now - timedelta(days=9), last_seen=now - timedelta(hours=5))
    issue_create(app=member.app, title="new-and-rare", event_count=1,
                 first_seen=now - timedelta(hours=1), last_seen=now - timedelta(hours=1))
    issue_create(app=member.app, title="middle", event_count=10,
                 first_seen=now - timedelta(days=2), last_seen=now)

    url = member.url("issue_list")
    assert titles_in_order(member.client.get(url).content.decode()) == ["middle", "new-and-rare", "old-but-busy"]
    assert titles_in_order(member.client.get(url + "?sort=first_seen").content.decode()) == [
        "new-and-rare", "middle", "old-but-busy",
    ]
    assert titles_in_order(member.client.get(url + "?sort=count").content.decode()) == [
        "old-but-busy", "middle", "new-and-rare",
    ]
    # An unknown sort falls back to last seen instead of failing.
    assert titles_in_order(member.client.get(url + "?sort=evil").content.decode())[0] == "middle"


def test_filters_by_status(member):
    issue_create(app=member.app, title="still-broken")
    issue_create(app=member.app, title="fixed-it", status=Issue.Status.RESOLVED)
    issue_create(app=member.app, title="dont-care", status=Issue.Status.IGNORED)

    url = member.url("issue_list")
    assert titles_in_order(member.client.get(url).content.decode()) == ["still-broken"]
    assert titles_in_order(member.client.get(url + "?status=resolved").content.decode()) == ["fixed-it"]
    assert titles_in_order(member.client.get(url + "?status=ignored").content.decode()) == ["dont-care"]


def test_searches_title_and_culprit(member):
    issue_create(app=member.app, title="KeyError: 'basket'", culprit="shop.views.checkout")
    issue_create(app=member.app, title="TimeoutError: upstream", culprit="shop.payments.charge")
    issue_create(app=member.app, title="ValueError: bad date", culprit="blog.views.archive")

    url = member.url("issue_list")
    assert titles_in_order(member.client.get(url + "?q=basket").content.decode()) == ["KeyError: &#x27;basket&#x27;"]
    assert sorted(titles_in_order(member.client.get(url + "?q=shop.").content.decode())) == [
        "KeyError: &#x27;basket&#x27;", "TimeoutError: upstream",
    ]
    nothing = member.client.get(url + "?q=nomatch").content.decode()
    assert titles_in_order(nothing) == []
    assert "No unresolved issues match “nomatch”." in nothing


def test_paginates(member):
    now = timezone.now()
    for index in range(30):
        issue_create(app=member.app, title=f"issue-{index:02d}", last_seen=now - timedelta(minutes=index))

    first = member.client.get(member.url("issue_list")).content.decode()
    second = member.client.get(member.url("issue_list") + "?page=2").content.decode()

    assert titles_in_order(first) == [f"issue-{index:02d}" for index in range(25)]
    assert titles_in_order(second) == [f"issue-{index:02d}" for index in range(25, 30)]
    assert "Page 1 of 2 · 30 issues" in first
    assert 'rel="next"' in first and 'rel="next"' not in second
    assert 'href="?status=unresolved&amp;sort=last_seen&amp;range=24h&amp;page=2" rel="next"' in first


def test_query_budget_does_not_grow_with_issues(member, django_assert_max_num_queries):
    def make(count: int) -> None:
        for index in range(count):
            issue = issue_create(app=member.app, title=f"issue-{index}")
            hourly_create(issue=issue, counts={timezone.now(): index + 1})

    make(1)
    # session, user, app, remembered environment, environment names, issue count, issue page,
    # sparklines, app chart, exception types, drops, release markers
    with django_assert_max_num_queries(12):
        assert member.client.get(member.url("issue_list")).status_code == 200
    make(40)
    with django_assert_max_num_queries(12):
        assert member.client.get(member.url("issue_list")).status_code == 200


def test_empty_app_says_how_to_start(member):
    html = member.client.get(member.url("issue_list")).content.decode()
    assert "No unresolved issues." in html
    assert "Nothing dropped." in html


def test_anonymous_is_sent_to_login(client, member):
    client.logout()
    response = client.get(member.url("issue_list"))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
