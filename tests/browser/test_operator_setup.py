"""What an operator does first, in a real browser: log in, add a deployment and call it, issue and block a key,
make a team and put a key in it. Every change made on a page is then checked through the API."""
from __future__ import annotations

import time

import openai
import pytest
import requests
from openai import OpenAI
from playwright.sync_api import Error as PlaywrightError

from tests.browser.browsing import ADMIN_USER, changelist_row, log_in
from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-upstream-browser-deployment"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello from the browser test"}]
WRONG_LOGIN = ("Please enter the correct username and password for a staff account. "
               "Note that both fields may be case-sensitive.")


def gateway_config(upstream: FakeOpenAI) -> dict:
    return {"model_list": [{"model_name": "mock-chat", "litellm_params": {"model": "mock/mock-gpt"},
                            "model_info": {"id": "mock-chat-1"}}],
            "general_settings": {"master_key": MASTER_KEY}}


def settled_content(page) -> str:
    """The page's HTML once a navigation in flight (chromium's own error page) has finished."""
    for _ in range(50):
        try:
            page.wait_for_load_state()
            return page.content()
        except PlaywrightError:  # "the page is navigating": ask again
            time.sleep(0.05)
    return page.content()


def success_messages(page) -> list[str]:
    return page.locator("ul.messagelist li.success").all_inner_texts()


def test_login_refuses_a_wrong_password_then_lands_on_the_index(anonymous, gateway):
    page = anonymous.open("/admin/", "login-form")
    assert page.url == f"{gateway.url}/admin/login/?next=/admin/"
    log_in(page, password="not-the-password")
    anonymous.settled("wrong-password")
    assert page.locator(".errornote").inner_text() == WRONG_LOGIN
    assert page.url == f"{gateway.url}/admin/login/?next=/admin/"
    assert page.locator("#user-tools").count() == 0
    log_in(page)
    anonymous.settled("index")
    assert page.url.split("?", 1)[0] == f"{gateway.url}/admin/"  # the dashboard may add its range to the query
    assert page.locator("#user-tools strong").text_content() == ADMIN_USER
    for model in ("models_registry/deployment", "keys/virtualkey", "keys/team", "keys/requestlog",
                  "files_registry/managedfile", "batches/batch"):
        assert page.locator(f"a[href='/admin/{model}/']").count() >= 1, model


def test_a_deployment_added_through_the_form_answers_through_the_api(admin, gateway, upstream, sdk):
    page = admin.open("/admin/models_registry/deployment/add/", "deployment-add")
    page.fill("#id_deployment_id", "browser-dep-1")
    page.fill("#id_model_name", "browser-chat")
    page.select_option("#id_provider", "openai")
    page.fill("#id_model", "gpt-browser")
    page.fill("#id_api_base", f"{upstream.url}/v1")
    page.fill("#id_api_key", UPSTREAM_KEY)
    admin.screenshots.take(page, "deployment-add-filled")
    page.click("input[name=_save]")
    admin.settled("deployment-list")
    assert page.url == f"{gateway.url}/admin/models_registry/deployment/"
    assert success_messages(page) == ["The deployment “browser-chat -> openai/gpt-browser” was added successfully."]
    row = changelist_row(page, "browser-dep-1")
    expected = {"model_name": "browser-chat", "id": "browser-dep-1", "provider": "openai",
                "provider_model": "gpt-browser", "mode": "Chat", "source": "Admin", "health": "not checked"}
    assert {name: row[name] for name in expected} == expected

    def answered():
        try:
            return sdk.chat.completions.create(model="browser-chat", messages=HELLO)
        except openai.NotFoundError:
            return None  # not in this worker's registry snapshot yet

    assert wait_until(answered, seconds=3, interval=0.1)
    upstream.reset()
    completion = sdk.chat.completions.create(model="browser-chat", messages=HELLO)
    assert completion.choices[0].message.content == "Hello from the fake provider."
    [received] = upstream.requests
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.body["model"] == "gpt-browser"
    assert received.body["messages"] == HELLO
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    page.click("#result_list a:text-is('browser-chat')")
    admin.settled("deployment-change")
    assert UPSTREAM_KEY not in page.content()  # the key is write-only: shown masked, never put back in the page
    assert page.locator("#id_api_key").input_value() == ""
    assert page.locator(".field-api_key .help").inner_text().startswith("Stored: ")


def test_an_issued_key_is_shown_once_works_and_stops_when_blocked(admin, gateway):
    page = admin.open("/admin/keys/virtualkey/add/", "key-add")
    page.fill("#id_key_alias", "browser-key")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.click("input[name=_save]")
    assert posted.value.status == 200
    assert "no-store" in posted.value.headers["cache-control"].split(", ")
    admin.settled("key-issued")
    assert page.locator("h1").inner_text() == "Key issued"
    plaintext = page.input_value("#issued-key")
    assert plaintext.startswith("sk-") and len(plaintext) > 30
    assert page.locator("label[for=issued-key]").inner_text() == "Key for browser-key"

    page.click("a.button:text-is('Continue to the key')")
    admin.settled("key-change-after-issue")
    assert page.locator("#id_key_alias").input_value() == "browser-key"
    assert plaintext not in page.content()
    change_path = page.url.removeprefix(gateway.url)
    key_name = page.locator(".field-key_name .readonly").inner_text()
    assert key_name.startswith("sk-") and key_name != plaintext and key_name[-4:] == plaintext[-4:]
    # Back to the issued page: it was sent with no-store, so the browser has no copy to show and does not
    # send the POST again (which would issue a second key).
    admin.watch.expect_failure("POST", "/admin/keys/virtualkey/add/", "net::ERR_CACHE_MISS")
    with pytest.raises(PlaywrightError, match="net::ERR_CACHE_MISS"):
        page.go_back()
    assert plaintext not in settled_content(page)  # chromium's own error page
    admin.open(change_path, "key-change-revisited")
    assert plaintext not in page.content()
    admin.open("/admin/keys/virtualkey/?q=browser-key", "key-list")
    assert plaintext not in page.content()
    assert page.locator("#result_list tbody tr").count() == 1  # going back issued no second key
    assert page.locator("#result_list tr", has_text="browser-key").locator("td.field-blocked img").get_attribute(
        "alt") == "False"

    with OpenAI(base_url=gateway.v1, api_key=plaintext, max_retries=0, timeout=30) as client:
        completion = client.chat.completions.create(model="mock-chat", messages=HELLO)
        assert completion.choices[0].message.content == "This is a mock response to: hello from the browser test"

        page.click("#result_list a:text-is('browser-key')")
        admin.settled("key-change")
        page.click("button:text-is('Block')")
        admin.settled("key-blocked")
        assert success_messages(page) == ["Blocked browser-key."]
        assert page.locator("button:text-is('Unblock')").count() == 1
        assert page.locator("#id_blocked").is_checked()

        def refused():
            try:
                client.chat.completions.create(model="mock-chat", messages=HELLO)
            except openai.AuthenticationError as error:
                return error
            return None

        assert wait_until(refused, seconds=3, interval=0.1)
        error = refused()
        assert error.status_code == 401
        assert error.body == {"message": "This API key is blocked.", "type": "authentication_error", "param": None,
                              "code": "key_blocked"}


def test_a_team_added_in_the_admin_is_listed_and_takes_a_key(admin, gateway):
    page = admin.open("/admin/keys/team/add/", "team-add")
    page.fill("#id_id", "team-browser")
    page.fill("#id_team_alias", "Browser Team")
    page.fill("#id_allowed_models", '["mock-chat"]')
    page.click("input[name=_save]")
    admin.settled("team-list")
    assert success_messages(page) == ["The team “Browser Team” was added successfully."]
    row = changelist_row(page, "team-browser")
    assert (row["id"], row["team_alias"], row["models_column"], row["spend_column"],
            row["budget_left_column"]) == ("team-browser", "Browser Team", "mock-chat", "$0.0000", "—")

    issued = requests.post(f"{gateway.url}/key/generate", json={"key_alias": "team-member"}, headers=AUTH,
                           timeout=10).json()
    admin.open("/admin/keys/virtualkey/?q=team-member", "team-key-search")
    page.click("#result_list a:text-is('team-member')")
    admin.settled("team-key-change")
    page.select_option("#id_team", label="Browser Team")
    page.click("input[name=_save]")
    admin.settled("team-key-saved")
    assert changelist_row(page, "team-member")["team"] == "Browser Team"
    info = requests.get(f"{gateway.url}/key/info", params={"key": issued["key"]}, headers=AUTH, timeout=10)
    assert info.status_code == 200
    assert info.json()["info"]["team_id"] == "team-browser"
    admin.open("/admin/keys/virtualkey/?team__id__exact=team-browser", "team-keys-filtered")
    assert page.locator("#result_list tbody tr").count() == 1
    assert changelist_row(page, "team-member")["team"] == "Browser Team"
