import orjson


def test_chat_through_the_django_client(client, configure_gateway, auth_headers):
    configure_gateway({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    response = client.post("/v1/chat/completions", data=body, content_type="application/json", **auth_headers)
    assert response.status_code == 200
    assert orjson.loads(response.content)["choices"][0]["message"]["content"] == "This is a mock response to: hi"
