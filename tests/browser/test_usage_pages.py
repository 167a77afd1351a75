"""What an operator reads after traffic: the request log list (filtered by model group) and the dashboard on the
admin's index, whose charts must be drawn by Chart.js with the traffic just sent, for every range.

The two tests send traffic to model groups of their own, so each asserts exact numbers whatever ran before it
on the module's gateway.
"""
from __future__ import annotations

import re

import orjson
import pytest
import requests
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

BATCH_WORKER = True
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
COSTS = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
SLOW_LINE_MS = 3000  # one line at a time: the dashboard's batch stays in progress for the whole test (then cancelled)
BATCH_LINES = 6
COOLDOWN_SECONDS = 120
DRAWN = "canvas[data-chart='{}'][data-drawn='true']"
# Sum of one model group's values in a chart, read back from the Chart.js instance that drew the canvas.
CHART_SUM = """([name, group]) => {
    const chart = Chart.getChart(document.querySelector(`canvas[data-chart="${name}"]`));
    const dataset = chart.data.datasets.find(each => each.label === group);
    return dataset ? dataset.data.reduce((sum, value) => sum + value, 0) : null;
}"""
# Proof that bars were painted: pixels of the canvas in the fill colour of a dataset that has data.
PAINTED = """(name) => {
    const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
    const chart = Chart.getChart(canvas);
    const colours = chart.data.datasets.filter(each => each.type !== 'line' && each.data.some(value => value > 0))
        .map(each => each.backgroundColor.toLowerCase());
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const hex = (value) => value.toString(16).padStart(2, '0');
    let opaque = 0, inDataColour = 0;
    for (let index = 0; index < pixels.length; index += 4) {
        if (pixels[index + 3] === 0) continue;
        opaque += 1;
        const colour = '#' + hex(pixels[index]) + hex(pixels[index + 1]) + hex(pixels[index + 2]);
        if (pixels[index + 3] === 255 && colours.includes(colour)) inDataColour += 1;
    }
    return {width: canvas.width, height: canvas.height, opaque, inDataColour, colours};
}"""


def gateway_config(upstream: FakeOpenAI) -> dict:
    def mock(group: str, deployment_id: str, **params) -> dict:
        return {"model_name": group, "litellm_params": {"model": f"mock/{deployment_id}", **params},
                "model_info": {"id": deployment_id, **COSTS}}

    def fake(group: str, deployment_id: str, order: int) -> dict:
        return {"model_name": group, "model_info": {"id": deployment_id},
                "litellm_params": {"model": f"openai/model-{deployment_id}", "order": order,
                                   "api_base": f"{upstream.url}/{deployment_id}/v1", "api_key": "sk-upstream-dash"}}

    return {"model_list": [
        mock("logs-chat", "logs-chat-1"), mock("logs-other", "logs-other-1"),
        mock("dash-chat", "dash-chat-1"), fake("dash-pair", "pair-a", 1), fake("dash-pair", "pair-b", 2),
        {"model_name": "dash-batch", "model_info": {"id": "dash-batch-1", "batch_concurrency": 1},
         "litellm_params": {"model": "mock/dash-batch", "mock_latency_ms": SLOW_LINE_MS}},
    ], "router_settings": {"num_retries": 1, "cooldown_time": COOLDOWN_SECONDS},
        "general_settings": {"master_key": MASTER_KEY}}


def key_issue(gateway, alias: str) -> dict:
    response = requests.post(f"{gateway.url}/key/generate", json={"key_alias": alias}, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def chat(gateway, key: str, group: str, text: str) -> str:
    """One chat call through the SDK; its request id."""
    with OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30) as client:
        raw = client.chat.completions.with_raw_response.create(model=group,
                                                               messages=[{"role": "user", "content": text}])
        assert raw.parse().choices[0].message.content
        return raw.headers["x-request-id"]


def logged(gateway, request_ids: set[str]) -> dict[str, dict]:
    """The request log entries (through `/spend/logs`) once every one of `request_ids` is written."""
    entries: dict[str, dict] = {}

    def written() -> bool:
        answer = requests.get(f"{gateway.url}/spend/logs", params={"limit": 1000}, headers=AUTH, timeout=10)
        entries.update({entry["request_id"]: entry for entry in answer.json() if entry["request_id"] in request_ids})
        return set(entries) == request_ids

    assert wait_until(written, seconds=10, interval=0.2), set(request_ids) - set(entries)
    return entries


def column(page, name: str) -> list[str]:
    return [text.strip() for text in page.locator(f"#result_list tbody td.field-{name}, "
                                                  f"#result_list tbody th.field-{name}").all_inner_texts()]


def test_request_logs_list_every_call_and_filter_by_model_group(admin, gateway):
    issued = key_issue(gateway, "logs-key")
    chat_ids = [chat(gateway, issued["key"], "logs-chat", f"logged question {index}") for index in range(3)]
    other_ids = [chat(gateway, MASTER_KEY, "logs-other", f"other question {index}") for index in range(2)]

    page = admin.open("/admin/keys/requestlog/", "request-logs")

    def listed() -> bool:
        page.reload()
        page.wait_for_load_state()
        return set(chat_ids + other_ids) <= set(column(page, "request_id"))

    assert wait_until(listed, seconds=10, interval=0.2), column(page, "request_id")
    admin.settled("request-logs-written")

    page.locator("#changelist-filter details", has_text="By model group").locator("a:text-is('logs-other')").click()
    admin.settled("request-logs-filtered")
    assert "model_group=logs-other" in page.url
    assert sorted(column(page, "request_id")) == sorted(other_ids)
    assert column(page, "model_group") == ["logs-other", "logs-other"]
    assert column(page, "key_display") == ["master key", "master key"]
    assert column(page, "status") == ["Succeeded", "Succeeded"]

    admin.open("/admin/keys/requestlog/?model_group=logs-chat", "request-logs-chat")
    assert sorted(column(page, "request_id")) == sorted(chat_ids)
    assert set(column(page, "key_display")) == {f"logs-key ({issued['token']})"}
    assert set(column(page, "deployment_id")) == {"logs-chat-1"}

    page.click(f"#result_list a:text-is('{chat_ids[0]}')")
    admin.settled("request-log-detail")
    fields = {name: page.locator(f".field-{name} .readonly").inner_text().strip()
              for name in ("request_id", "key_alias", "model_group", "deployment_id", "provider", "status_code")}
    assert fields == {"request_id": chat_ids[0], "key_alias": "logs-key", "model_group": "logs-chat",
                      "deployment_id": "logs-chat-1", "provider": "mock", "status_code": "200"}


def table_row(page, table: str, text: str) -> list[str]:
    """The cells of the one row of `table` that mentions `text`."""
    row = page.locator(f"{table} tbody tr", has_text=text)
    assert row.count() == 1, page.locator(table).inner_text()
    return [cell.strip() for cell in row.locator("td").all_inner_texts()]


def wait_drawn(page) -> None:
    for name in ("requests", "spend", "tokens"):
        page.wait_for_selector(DRAWN.format(name), state="attached")


def test_the_dashboard_draws_the_traffic_for_every_range(admin, gateway, upstream, sdk):
    issued = key_issue(gateway, "dash-top-key")
    keyed = {chat(gateway, issued["key"], "dash-chat", f"dashboard question {index}") for index in range(4)}
    by_master = {chat(gateway, MASTER_KEY, "dash-chat", "from the master key")}
    upstream.fail_next(status=429, body={"error": {"message": "slow down", "type": "rate_limit_error",
                                                   "param": None, "code": "rate_limited"}}, path_contains="/pair-a/")
    cooled = {chat(gateway, MASTER_KEY, "dash-pair", "through the pair")}  # pair-a answers 429, pair-b answers
    assert [request.path for request in upstream.requests] == ["/pair-a/v1/chat/completions",
                                                               "/pair-b/v1/chat/completions"]
    entries = logged(gateway, keyed | by_master | cooled)
    key_cost = sum(entries[request_id]["spend"] for request_id in keyed)
    assert key_cost > 0

    lines = [{"custom_id": f"slow-{index}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "dash-batch", "messages": [{"role": "user", "content": "slow"}]}}
             for index in range(BATCH_LINES)]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    batch_input = sdk.files.create(file=("slow.jsonl", data, "application/jsonl"), purpose="batch",
                                   extra_body={"target_model_names": "dash-batch"})
    batch = sdk.batches.create(input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h")
    try:
        assert wait_until(lambda: sdk.batches.retrieve(batch.id).status == "in_progress", seconds=10, interval=0.1)
        page = admin.open("/admin/", "dashboard")
        wait_drawn(page)
        admin.settled("dashboard-day")
        assert page.locator("button[data-range='day']").get_attribute("aria-pressed") == "true"
        scripts = {path.rsplit("/static/", 1)[1]: status for path, status in admin.watch.static.items()
                   if path.endswith(".js") and "/static/gateway/" in path}
        # Chart.js is vendored and served by the gateway (whitenoise), like the dashboard's own script.
        assert {name: status for name, status in scripts.items() if name.startswith("gateway/vendor/chart.umd")} \
            in ({"gateway/vendor/chart.umd.min.js": 200}, {"gateway/vendor/chart.umd.js": 200}), scripts
        assert scripts["gateway/dashboard.js"] == 200
        for name in ("requests", "spend", "tokens"):
            painted = page.evaluate(PAINTED, name)
            assert painted["width"] > 100 and painted["height"] > 100, painted
            assert painted["inDataColour"] > 20, painted  # bars in a dataset's colour, not just axes and labels
        assert page.evaluate(CHART_SUM, ["requests", "dash-chat"]) == 5
        assert page.evaluate(CHART_SUM, ["requests", "dash-pair"]) == 1

        tokens = sum(entries[request_id]["total_tokens"] for request_id in keyed)
        top_key = table_row(page, "#top-keys", "dash-top-key")  # key, team, requests, errors, tokens, spend
        assert top_key[0].startswith("dash-top-key")
        assert top_key[1:] == ["\N{EN DASH}", "4", "0", str(tokens), f"${key_cost:.6f}"]
        # Deployment, group, provider, requests, error rate, mean, p50, p95, status.
        health = table_row(page, "#deployment-health", "dash-chat-1")
        assert health[:5] + health[-1:] == ["dash-chat-1", "dash-chat", "mock", "5", "0.0%", "serving"]
        assert table_row(page, "#deployment-health", "pair-a")[-1].startswith("cooling down ")
        cooling = page.locator("#cooldowns li", has_text="pair-a")
        assert cooling.count() == 1 and page.locator("#cooldowns li").count() == 1
        left = re.fullmatch(r"pair-a dash-pair · openai · (\d+) s left", cooling.inner_text())
        assert left and 60 < int(left[1]) <= COOLDOWN_SECONDS, cooling.inner_text()
        running = page.locator(f"#batches-in-progress [data-batch-id='{batch.id}']")
        assert running.locator("progress").count() == 1
        assert running.locator("progress").get_attribute("max") == str(BATCH_LINES)
        assert running.locator("progress").evaluate("bar => bar.value") in range(BATCH_LINES)
        assert "in progress" in running.inner_text()

        for range_name, shot in (("hour", "dashboard-hour"), ("30d", "dashboard-30d")):
            page.click(f"button[data-range='{range_name}']")
            wait_drawn(page)
            admin.settled(shot)
            assert page.url.endswith(f"/admin/?range={range_name}")
            assert page.locator(f"button[data-range='{range_name}']").get_attribute("aria-pressed") == "true"
            assert page.evaluate(CHART_SUM, ["requests", "dash-chat"]) == 5, range_name
            assert page.evaluate(PAINTED, "requests")["inDataColour"] > 20, range_name
            assert table_row(page, "#top-keys", "dash-top-key")[2] == "4", range_name

        page.fill("#dashboard-filter input[name=key_id]", issued["token"])
        page.click("#dashboard-filter button[type=submit]")
        wait_drawn(page)
        admin.settled("dashboard-30d-one-key")
        assert page.evaluate(CHART_SUM, ["requests", "dash-chat"]) == 4
        assert page.locator("[data-total='requests']").inner_text() == "4"
        assert page.locator("[data-total='errors']").inner_text() == "0"
        assert page.locator("[data-total='cost']").inner_text() == f"${key_cost:.6f}"
    finally:
        sdk.batches.cancel(batch.id)
