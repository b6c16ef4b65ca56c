"""A hostile event: every client-sent string must reach the page escaped, never as markup."""

from __future__ import annotations

from tests.dashboards.rows import event_create, fixture_event, issue_create

XSS = '<script>alert("pwned")</script>'
ESCAPED = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"


def hostile_event() -> dict:
    data = fixture_event()
    data["message"] = XSS
    data["culprit"] = XSS
    data["exception"]["type"] = XSS
    data["exception"]["value"] = XSS
    data["exception"]["chain"] = [{"type": XSS, "value": XSS}]
    frame = data["stacktrace"]["frames"][-1]
    frame["vars"][XSS] = XSS
    frame["context_line"] = XSS
    frame["filename"] = XSS
    frame["function"] = XSS
    data["http"]["headers"]["X-Evil"] = XSS
    data["http"]["cookies"]["evil"] = XSS
    data["http"]["url"] = "javascript:" + XSS
    data["http"]["data"] = {"comment": XSS}
    data["user"] = {"email": XSS, "username": XSS}
    data["machine"]["hostname"] = XSS
    data["tags"] = {XSS: XSS}
    data["extra"] = {"note": XSS}
    data["release"] = XSS
    data["environment"] = XSS
    data["param_message"] = {"message": XSS, "params": []}
    return data


def test_hostile_event_is_escaped_everywhere(member):
    issue = issue_create(app=member.app, title=XSS, culprit=XSS, exception_type=XSS, grouping_reason=XSS)
    event_create(issue=issue, data=hostile_event())

    pages = {
        "issue page": member.client.get(member.url("issue_detail", issue.id)),
        "issue list": member.client.get(member.url("issue_list")),
        "search": member.client.get(member.url("issue_list") + "?q=" + XSS),
    }

    for name, response in pages.items():
        html = response.content.decode()
        assert response.status_code == 200, name
        assert "<script" not in html, name
        assert ESCAPED in html, name
    issue_page = pages["issue page"].content.decode()
    # Every field above reached the page (escaped), none was dropped to dodge the check.
    assert issue_page.count(ESCAPED) >= 20
    assert 'href="javascript:' not in issue_page
