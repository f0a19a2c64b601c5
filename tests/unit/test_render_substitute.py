"""${VAR} substitution: Flux postBuild semantics, strict, and no Secret value in any error."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from test_render_support import FIXTURES, kustomize_bin, write  # noqa: F401 (a fixture)

from reconciler.render import Patch, RenderError, RenderOptions, render
from reconciler.render.substitute import SubstitutionError, substitute_text


def cm(data: str, name: str = "cfg", extra_meta: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra_meta}data:\n{data}"


@pytest.mark.parametrize(
    ("text", "variables", "want"),
    [
        ("a ${X} b", {"X": "1"}, "a 1 b"),
        ("${X:=dflt}", {}, "dflt"),
        ("${X:=dflt}", {"X": ""}, "dflt"),  # empty counts as unset for a default, as in Flux
        ("${X:-dflt}", {"X": "set"}, "set"),
        ("${X:=}", {}, ""),
        ("${X}", {"X": ""}, ""),
        ("$${X} and $X and $ and $$Y", {}, "${X} and $X and $ and $$Y"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${A:=a b: c}", {}, "a b: c"),
    ],
)
def test_substitute_text(text: str, variables: dict[str, str], want: str) -> None:
    assert substitute_text(text, variables)[0] == want


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("${MISSING}", "variable ${MISSING} is not defined and has no default"),
        ("${X/a/b}", "unsupported variable reference '${X/a/b}'"),
        ("${1X}", "unsupported variable reference '${1X}'"),
        ("abc ${X", "unterminated variable reference '${X'"),
    ],
)
def test_substitute_text_errors(text: str, needle: str) -> None:
    with pytest.raises(SubstitutionError) as e:
        substitute_text(text, {"X": "1"})
    assert needle in e.value.why


def test_defaults_typed_results_and_escapes(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "d.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web-${ENV}
              labels: {tier: "${TIER:=front}"}
            spec:
              replicas: ${REPLICAS:=2}
              paused: ${PAUSED:=false}
              template:
                spec:
                  containers:
                    - name: app
                      image: registry/app:${TAG}
                      command: ["sh", "-c", "echo $${HOME} $HOME ${GREETING:=hi there}"]
            """
        },
    )
    (m,) = render(tmp_path, ".", RenderOptions(substitute={"ENV": "prod", "TAG": "1.2.3"}))
    obj = m.obj
    assert obj["metadata"] == {"name": "web-prod", "labels": {"tier": "front"}}
    assert obj["spec"]["replicas"] == 2  # typed, as in Flux
    assert obj["spec"]["paused"] is False
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry/app:1.2.3"
    assert c["command"] == ["sh", "-c", "echo ${HOME} $HOME hi there"]


def test_numbers_stay_numbers_unless_quoted_with_the_flux_idiom(tmp_path: Path) -> None:
    write(tmp_path, {"c.yaml": cm('  plain: ${ID}\n  quoted: "${ID}"\n  idiom: ${quote}${ID}${quote}\n')})
    (m,) = render(tmp_path, ".", RenderOptions(substitute={"ID": "123", "quote": '"'}))
    # Quotes in the source do not survive (kustomize drops them before Flux substitutes too).
    assert m.obj["data"] == {"plain": 123, "quoted": 123, "idiom": "123"}


def test_undefined_variable_names_file_object_field_and_variable(tmp_path: Path) -> None:
    write(tmp_path, {"app/cfg.yaml": cm("  a: ok\n  b: x-${MISSING}\n", extra_meta="  namespace: apps\n")})
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".", RenderOptions(substitute={"OTHER": "1"}))
    assert str(e.value) == (
        "app/cfg.yaml (document 1): ConfigMap/apps/cfg: variable ${MISSING} is not defined and has no default "
        "(define it in substitute or substituteFrom, write ${MISSING:=default}, or escape it as $${MISSING}) "
        "(field data.b)"
    )


def test_without_substitution_every_dollar_brace_is_kept_verbatim(tmp_path: Path) -> None:
    # Opt-in, as Flux's postBuild: a repository that never asks for substitution is applied
    # as written (shell scripts, Grafana's ${datasource}, CRD descriptions with ${var:position}).
    text = "echo ${FRONTEND} ${var:position} ${datasource} $${X} ${unterminated"
    write(tmp_path, {"c.yaml": cm(f"  script: '{text}'\n")})
    assert render(tmp_path, ".")[0].obj["data"] == {"script": text}
    assert render(tmp_path, ".", RenderOptions(substitute=None))[0].obj["data"] == {"script": text}


def test_undefined_variable_fails_once_asked_for_even_without_any_variables(tmp_path: Path) -> None:
    # Unlike Flux (which skips substitution when no variable is defined): an empty or forgotten
    # substituteFrom must not deploy a literal ${CLUSTER}.
    write(tmp_path, {"c.yaml": cm("  script: echo ${CLUSTER} $${X}\n")})
    with pytest.raises(RenderError, match=r"variable \$\{CLUSTER\} is not defined"):
        render(tmp_path, ".", RenderOptions(substitute={}))
    write(tmp_path, {"c.yaml": cm("  script: echo ${CLUSTER:=none} $${X} $HOME\n")})
    assert render(tmp_path, ".", RenderOptions(substitute={}))[0].obj["data"] == {"script": "echo none ${X} $HOME"}


@pytest.mark.parametrize("key", ["gitops.reconciler.dev/substitute", "kustomize.toolkit.fluxcd.io/substitute"])
@pytest.mark.parametrize("where", ["annotations", "labels"])
def test_objects_can_opt_out(tmp_path: Path, key: str, where: str) -> None:
    meta = f"  {where}:\n    {key}: disabled\n"
    write(tmp_path, {"c.yaml": cm("  dashboard: '${MISSING} $${X}'\n", extra_meta=meta)})
    assert render(tmp_path, ".", RenderOptions(substitute={"A": "1"}))[0].obj["data"] == {
        "dashboard": "${MISSING} $${X}"
    }


@pytest.mark.usefixtures("kustomize_bin")
def test_substitution_runs_after_kustomize_and_patches(tmp_path: Path) -> None:
    patch = Patch.from_spec(
        {
            "patch": "- {op: add, path: /metadata/labels/cluster, value: '${CLUSTER_NAME}'}",
            "target": {"kind": "Service"},
        }
    )
    got = render(FIXTURES / "repo", "apps/prod", RenderOptions(substitute={"CLUSTER_NAME": "eu-1"}, patches=[patch]))
    svc, dep = (m.obj for m in got)
    assert svc["metadata"]["labels"] == {"app": "web", "cluster": "eu-1"}
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "CLUSTER", "value": "eu-1"} in env
    assert dep["spec"]["replicas"] == 1


def _no_leak(e: pytest.ExceptionInfo[RenderError], secret: str) -> str:
    text = "".join(traceback.format_exception(e.value))
    assert secret not in text
    assert secret not in repr(e.value.args)
    return str(e.value)


def test_secret_value_never_appears_in_a_parse_error(tmp_path: Path) -> None:
    write(tmp_path, {"c.yaml": cm("  token: ${TOKEN}\n")})
    secret = "s3cr3t: [unbalanced"
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".", RenderOptions(substitute={"TOKEN": secret}, secret_vars=frozenset({"TOKEN"})))
    msg = _no_leak(e, secret)
    assert "s3cr3t" not in msg
    assert msg.startswith("c.yaml (document 1): ConfigMap/cfg: substituting ${TOKEN} did not give a valid object")
    assert "details withheld because ${TOKEN} comes from a Secret" in msg


def test_non_secret_parse_error_says_what_went_wrong(tmp_path: Path) -> None:
    write(tmp_path, {"c.yaml": cm("  v: ${V}\n")})
    with pytest.raises(RenderError, match=r"substituting \$\{V\} did not give a valid object \(line \d+ of the"):
        render(tmp_path, ".", RenderOptions(substitute={"V": "[x"}))


def test_secret_value_is_redacted_from_any_later_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.yaml": cm("  x: '1'\n", name="app-${SUFFIX}"),
            "b.yaml": cm("  x: '2'\n", name="app-hunter2secret"),
        },
    )
    opts = RenderOptions(substitute={"SUFFIX": "hunter2secret"}, secret_vars=frozenset({"SUFFIX"}))
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".", opts)
    msg = _no_leak(e, "hunter2secret")
    assert msg == (
        "b.yaml (document 1): ConfigMap/app-***: duplicate object: defined in a.yaml (document 1) and again in "
        "b.yaml (document 1); group, kind, namespace and name must be unique"
    )


def test_non_secret_values_are_not_redacted(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": cm("  x: '1'\n", name="app-${SUFFIX}"), "b.yaml": cm("  x: '2'\n", name="app-blue")})
    with pytest.raises(RenderError, match="ConfigMap/app-blue: duplicate object"):
        render(tmp_path, ".", RenderOptions(substitute={"SUFFIX": "blue", "T": "x"}, secret_vars=frozenset({"T"})))
