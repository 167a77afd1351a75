"""The admin's provider-aware form for a deployment.

An operator fills in what a provider needs (model, api_base, api_key, api_version) as separate
fields, anything else as JSON; the form assembles LiteLLM's `{model_name, litellm_params,
model_info}` and validates it with the same rules as config.yaml and the API, so the admin cannot
store a deployment the API would refuse. The API key is write-only: it is never put back into the
page, and leaving it blank on edit keeps the stored one.
"""
from __future__ import annotations

from typing import Any

from django import forms

from models_registry.deployment_params import ID_PATTERN, deployment_spec_build, stored_params
from models_registry.models import Deployment
from models_registry.secrets import SECRET_PARAM_NAMES, is_env_reference, mask
from providers.errors import InvalidRequestError
from providers.registry import known_providers, split_model

# litellm_params that have a field of their own; "Other parameters" holds the rest.
OWN_FIELDS = ("model", "api_base", "api_key", "api_version", "rpm", "tpm", "weight", "order")
ROUTING_FIELDS = ("rpm", "tpm", "weight", "order")
# Where a validation error about a parameter is shown.
ERROR_FIELD = {"litellm_params.model": "model", "litellm_params.api_base": "api_base",
               "litellm_params.api_key": "api_key", "litellm_params.api_version": "api_version",
               "litellm_params.rpm": "rpm", "litellm_params.tpm": "tpm", "litellm_params.weight": "weight",
               "litellm_params.order": "order", "model_name": "model_name", "model_info.mode": "mode",
               "model_info.id": "deployment_id", "model_info": "model_info"}


def _provider_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in known_providers()]


class DeploymentForm(forms.ModelForm):
    """Add or edit a deployment made in the admin or through the API (config rows are read-only)."""

    deployment_id = forms.CharField(
        label="Id", required=False, max_length=64,
        help_text="The public id (model_info.id). Leave blank for a generated one.")
    provider = forms.ChoiceField(choices=_provider_choices, initial="openai")
    model = forms.CharField(label="Provider model", max_length=255,
                            help_text="The provider's model or deployment name, e.g. gpt-4o-mini.")
    api_base = forms.CharField(label="API base", required=False, max_length=1000,
                               help_text="https://… or os.environ/NAME. Required for azure, hosted_vllm, openai_like.")
    api_key = forms.CharField(
        label="API key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Encrypted when stored; write os.environ/NAME to read it from the environment at call time.")
    api_key_clear = forms.BooleanField(label="Remove the stored API key", required=False)
    api_version = forms.CharField(label="API version", required=False, max_length=64,
                                  help_text="Azure: e.g. 2024-10-21.")
    extra_params = forms.JSONField(label="Other parameters", required=False,
                                   help_text="Any other litellm_params, as a JSON object (e.g. {\"timeout\": 30}).")
    model_info = forms.JSONField(required=False, help_text="Model metadata as a JSON object (base_model, prices, "
                                                           "supports_* flags, your own keys).")

    class Meta:
        model = Deployment
        fields = ("model_name", "mode", "rpm", "tpm", "weight", "order", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entry: dict[str, Any] = {}
        row = self.instance if self.instance.pk else None
        if row is None:
            self.fields.pop("api_key_clear", None)
            return
        self.fields.pop("deployment_id", None)
        params = stored_params(row)
        provider, model = split_model(str(params.get("model", "")))
        self.initial.update({
            "provider": provider, "model": model, "api_base": params.get("api_base", ""),
            "api_version": params.get("api_version", ""),
            "extra_params": {key: value for key, value in row.litellm_params.items()
                             if key not in OWN_FIELDS and key not in SECRET_PARAM_NAMES},
            "model_info": {key: value for key, value in row.model_info.items() if key != "mode"},
        })
        key = params.get("api_key")
        if key:
            shown = key if is_env_reference(key) else mask(str(key))
            self.fields["api_key"].help_text = f"Stored: {shown}. Leave blank to keep it."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        extra = cleaned.get("extra_params") or {}
        model_info = cleaned.get("model_info") or {}
        for name, value in (("extra_params", extra), ("model_info", model_info)):
            if not isinstance(value, dict):
                self.add_error(name, "Enter a JSON object.")
        if self.errors:
            return cleaned
        duplicated = sorted(set(extra) & set(OWN_FIELDS))
        if duplicated:
            self.add_error("extra_params", f"Set {duplicated[0]} in its own field.")
            return cleaned
        params = self._params(cleaned, extra)
        info = {**{key: value for key, value in model_info.items() if key not in ("id", "mode")},
                "mode": cleaned["mode"]}
        row = self.instance if self.instance.pk else None
        deployment_id = row.id if row else (cleaned.get("deployment_id") or "").strip()
        # Validate what will be stored: a blank key on edit means the stored one stays.
        checked = {**{k: v for k, v in (stored_params(row) if row else {}).items() if k in SECRET_PARAM_NAMES},
                   **params}
        if cleaned.get("api_key_clear"):
            checked.pop("api_key", None)
        try:
            deployment_spec_build(deployment_id=deployment_id or "new-deployment", model_name=cleaned["model_name"],
                                  litellm_params=checked, model_info=info)
        except InvalidRequestError as error:
            self.add_error(self._field_for(error.param), error.message)
            return cleaned
        if row is None and deployment_id and Deployment.objects.filter(id=deployment_id).exists():
            self.add_error("deployment_id", f"A deployment with id '{deployment_id}' already exists.")
            return cleaned
        if cleaned.get("api_key_clear"):
            params["api_key"] = ""
        self.entry = {"deployment_id": deployment_id or None, "model_name": cleaned["model_name"],
                      "litellm_params": params, "model_info": info, "enabled": cleaned.get("enabled", True)}
        return cleaned

    def clean_deployment_id(self) -> str:
        value = (self.cleaned_data.get("deployment_id") or "").strip()
        if value and not ID_PATTERN.match(value):
            raise forms.ValidationError("Use 1-64 letters, digits or . _ : @ - (starting with a letter or digit).")
        return value

    def _field_for(self, param: str | None) -> str | None:
        """The form field an API parameter error belongs to (None: shown above the form)."""
        field = ERROR_FIELD.get(param or "")
        if field is None and (param or "").startswith("litellm_params."):
            field = "extra_params"
        return field if field in self.fields else None

    @staticmethod
    def _params(cleaned: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"model": f"{cleaned['provider']}/{cleaned['model'].strip()}"}
        for name in ("api_base", "api_key", "api_version"):
            value = (cleaned.get(name) or "").strip()
            if value:
                params[name] = value
        for name in ROUTING_FIELDS:
            if cleaned.get(name) is not None:
                params[name] = cleaned[name]
        params.update(extra)
        return params
