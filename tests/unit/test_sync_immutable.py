"""Which API refusals mean "immutable field", the field they name, and the paths git changes below it."""

from __future__ import annotations

from reconciler.kube.client import KubeError
from reconciler.sync import immutable


def err(message: str, causes: list[dict[str, str]] | None = None, status: int = 422) -> KubeError:
    return KubeError(status=status, reason="Invalid", message=message, method="PATCH", path="/x", causes=causes or [])


def test_fields_from_causes_in_each_kind_s_wording() -> None:
    for field, text in [
        ("parameters", "Forbidden: updates to parameters are forbidden."),
        ("roleRef", 'Invalid value: {"Name":"edit"}: cannot change roleRef'),
        ("spec.clusterIPs[0]", 'Invalid value: ["10.0.0.9"]: may not change once set'),
        ("data", "Forbidden: field is immutable when `immutable` is set"),
        ("spec", "Forbidden: spec is immutable after creation except resources.requests"),
    ]:
        assert immutable.fields(err(f"X is invalid: {field}: {text}", [{"field": field, "message": text}])) == [field]


def test_field_from_the_message_when_the_server_sends_no_causes() -> None:
    e = err('StorageClass.storage.k8s.io "s" is invalid: parameters: Forbidden: updates to parameters are forbidden.')
    assert immutable.fields(e) == ["parameters"]
    both = err(
        'X "x" is invalid: [provisioner: Forbidden: updates to provisioner are forbidden., parameters: Forbidden: '
        "updates to parameters are forbidden.]"
    )
    assert immutable.fields(both) == ["provisioner", "parameters"]


def test_other_refusals_are_not_immutable() -> None:
    assert (
        immutable.fields(err("X is invalid: spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535"))
        == []
    )
    assert immutable.fields(err("field is immutable", status=409)) == []


def test_long_messages_keep_both_ends() -> None:
    text = 'Job.batch "j" is invalid: spec.template: Invalid value: {' + "x" * 5000 + "}: field is immutable"
    said = immutable.server_message(err(text))
    assert said.startswith('Job.batch "j" is invalid: spec.template')
    assert said.endswith("field is immutable")
    assert len(said) < 700


def test_changed_below_names_paths_never_values() -> None:
    desired = {"spec": {"storageClassName": "two", "resources": {"requests": {"storage": "1Gi"}}}, "data": {"k": "new"}}
    live = {
        "spec": {"storageClassName": "one", "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Fs"},
        "data": {"k": "old"},
    }
    assert immutable.changed_below("spec", desired, live) == ["spec.storageClassName"]
    assert immutable.changed_below("data", desired, live) == ["data.k"]
    assert (
        immutable.changed_below("spec.clusterIPs[0]", {"spec": {"clusterIPs": ["a"]}}, {"spec": {"clusterIPs": ["b"]}})
        == []
    )
    assert immutable.changed_below("spec", desired, None) == []
