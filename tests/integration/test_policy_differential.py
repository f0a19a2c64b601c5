"""Differential test: our offline ValidatingAdmissionPolicy verdicts against the real kube-apiserver's.

Every case is a (policy, binding, params, object).  All cases are installed at once into the
test control plane; each case's binding is narrowed by an objectSelector on a label that
only its own object carries, so cases cannot see each other (the label and the selector
are part of what both sides evaluate).  A sentinel policy created last tells us when the
apiserver has compiled everything before it (its informers deliver in creation order).
Then each object is created with ``dryRun=All`` and the server's answer (allowed, or
denied with reason and message) must equal ours.  A disagreement is a bug in our evaluator.

The objects avoid fields the apiserver defaults (``replicas`` is always set, no
``has(...securityContext)``): we judge the object as written in git, the apiserver judges
it after defaulting, and that difference is documented, not tested.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.kube import client
from reconciler.policy.evaluation import evaluate
from reconciler.policy.loading import policy_set_from_manifests
from reconciler.policy.model import Violation, admission_message
from reconciler.render.manifests import Manifest, load_path

CASE_LABEL = "diff.test/case"
RUN = uuid.uuid4().hex[:6]
NS = f"pdiff-{RUN}"
NS_LABELS = {"env": "test", "team": "payments"}

CM_RULE = {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["CREATE"]}
DEPLOY_RULE = {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "operations": ["*"]}


@dataclass
class Case:
    id: str
    obj: dict[str, Any]
    validations: list[dict[str, Any]]
    policy: dict[str, Any] = field(default_factory=dict)  # extra spec fields of the policy
    binding: dict[str, Any] = field(default_factory=dict)  # extra spec fields of the binding
    params: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=lambda: [CM_RULE])
    actions: list[str] = field(default_factory=lambda: ["Deny"])


def cm(name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": NS}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {}}


def deploy(name: str, containers: list[dict[str, Any]], replicas: int = 2, **spec: Any) -> dict[str, Any]:
    sel = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": sel},
            "template": {"metadata": {"labels": sel}, "spec": {"containers": containers, **spec}},
        },
    }


def ctr(name: str, image: str, limits: bool = True) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if limits:
        c["resources"] = {"limits": {"cpu": "100m", "memory": "64Mi"}, "requests": {"cpu": "50m", "memory": "32Mi"}}
    return c


def v(expression: str, message: str | None = None, **kw: str) -> dict[str, Any]:
    out: dict[str, Any] = {"expression": expression}
    if message is not None:
        out["message"] = message
    out.update(kw)
    return out


PARAM_KIND = {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}
CONTAINERS = "object.spec.template.spec.containers"

CASES: list[Case] = [
    # --- messages
    Case(
        "label-ok",
        cm("a", labels={"owner": "x"}),
        [v("has(object.metadata.labels) && 'owner' in object.metadata.labels", "needs an owner label")],
    ),
    Case(
        "label-missing",
        cm("b"),
        [v("has(object.metadata.labels) && 'owner' in object.metadata.labels", "needs an owner label")],
    ),
    Case("no-message", cm("c", {"k": "v"}), [v("object.data.size() == 0")]),
    Case(
        "message-expression",
        cm("d", {"k": "v"}),
        [v("object.data.size() == 0", "static", messageExpression="'has ' + string(object.data.size()) + ' keys'")],
    ),
    Case(
        "message-expression-error",
        cm("e", {"k": "v"}),
        [v("object.data.size() == 0", "fallback", messageExpression="'x' + object.data.nokey")],
    ),
    Case(
        "message-expression-newline",
        cm("f", {"k": "v"}),
        [v("object.data.size() == 0", messageExpression="'two\\nlines'")],
    ),
    Case(
        "message-expression-blank",
        cm("g", {"k": "v"}),
        [v("object.data.size() == 0", "blank falls back", messageExpression="'   '")],
    ),
    Case("reason-forbidden", cm("h", {"k": "v"}), [v("!('k' in object.data)", "no k", reason="Forbidden")]),
    Case(
        "second-validation-fails", cm("i", {"k": "v"}), [v("true", "never"), v("object.data.k == 'w'", "k must be w")]
    ),
    Case(
        "first-of-two-fails",
        cm("j", {"k": "v"}),
        [v("object.data.k == 'x'", "first"), v("object.data.k == 'y'", "second")],
    ),
    Case(
        "format-message",
        cm("k", {"k": "v"}),
        [v("false", messageExpression="'%s has %d keys'.format([object.metadata.name, object.data.size()])")],
    ),
    # --- runtime errors and failurePolicy
    Case("missing-key-fail", cm("l", {"k": "v"}), [v("object.data.other == 'x'", "msg")]),
    Case(
        "missing-key-ignore",
        cm("m", {"k": "v"}),
        [v("object.data.other == 'x'", "msg")],
        policy={"failurePolicy": "Ignore"},
    ),
    Case("index-error", cm("n", {"k": "v"}), [v("object.data.k.split(',')[3] == 'x'")]),
    Case("optional-field", cm("o", {"k": "v"}), [v("object.?data.?other.orValue('none') == 'none'")]),
    Case(
        "optional-index",
        cm("p", {"k": "a,b"}),
        [v("object.data.k.split(',')[?5].orValue('z') == 'y'", "optional index")],
    ),
    # --- CEL libraries
    Case(
        "strings-ext", cm("q", {"k": "A,B"}), [v("object.data.k.lowerAscii().split(',').join('-') == 'a-b'", "strings")]
    ),
    Case(
        "strings-ext-deny",
        cm("r", {"k": "A,C"}),
        [v("object.data.k.lowerAscii().split(',').join('-') == 'a-b'", "strings")],
    ),
    Case(
        "regex-matches",
        cm("s", {"host": "Web.example.com"}),
        [v("object.data.host.matches('^[a-z.]+$')", "lowercase host")],
    ),
    Case(
        "regex-find",
        cm("t", {"v": "release-1.2.3"}),
        [v("object.data.v.find('[0-9]+') == '2'", messageExpression="'found ' + object.data.v.find('[0-9.]+')")],
    ),
    Case(
        "regex-findall",
        cm("u", {"v": "a1b22c333"}),
        [v("object.data.v.findAll('[0-9]+').size() == 2", "three numbers")],
    ),
    Case(
        "lists-lib",
        cm("w", {"n": "3,1,2"}),  # a list: CEL leaves the iteration order of a map unspecified
        [
            v(
                "object.data.n.split(',').map(x, int(x)).isSorted()",
                messageExpression="'sum ' + string(object.data.n.split(',').map(x, int(x)).sum())"
                + " + ', max ' + string(object.data.n.split(',').map(x, int(x)).max())",
            )
        ],
    ),
    Case(
        "sets-ext",
        cm("x", {"a": "1"}),
        [
            v("sets.contains(['a', 'b'], object.data.map(k, k))", "keys a or b"),
            v("sets.intersects(object.data.map(k, k), ['z'])", "needs z"),
        ],
    ),
    Case(
        "cross-numeric",
        deploy("cross", [ctr("c", "nginx:1.27")], replicas=2),
        [v("object.spec.replicas < 1.5", "at most one replica")],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "exists-one",
        cm("y", {"a": "x", "b": "x"}),
        [v("object.data.exists_one(k, object.data[k] == 'x')", "exactly one x")],
    ),
    # --- workloads
    Case(
        "image-tag-ok",
        deploy("tagok", [ctr("c", "registry.k8s.io/pause:3.10")]),
        [v(f"{CONTAINERS}.all(c, c.image.contains(':') && !c.image.endsWith(':latest'))", "tagged images only")],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "image-latest",
        deploy("latest", [ctr("c", "nginx:latest"), ctr("d", "busybox")]),
        [
            v(
                f"{CONTAINERS}.all(c, c.image.contains(':') && !c.image.endsWith(':latest'))",
                messageExpression=f"'untagged or latest: ' + {CONTAINERS}.filter(c, !c.image.contains(':') || c.image.endsWith(':latest')).map(c, c.name).join(', ')",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "limits-missing",
        deploy("nolimits", [ctr("c", "nginx:1.27", limits=False)]),
        [
            v(
                f"{CONTAINERS}.all(c, has(c.resources) && has(c.resources.limits) && has(c.resources.requests))",
                "requests and limits",
            )
        ],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "limits-ok",
        deploy("limits", [ctr("c", "nginx:1.27")]),
        [
            v(
                f"{CONTAINERS}.all(c, has(c.resources) && has(c.resources.limits) && has(c.resources.requests))",
                "requests and limits",
            )
        ],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "host-network",
        deploy("hostnet", [ctr("c", "nginx:1.27")], hostNetwork=True),
        [v("!object.spec.template.spec.?hostNetwork.orValue(false)", "no hostNetwork")],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "privileged",
        deploy("priv", [{**ctr("c", "nginx:1.27"), "securityContext": {"privileged": True}}]),
        [
            v(
                f"{CONTAINERS}.all(c, !c.?securityContext.?privileged.orValue(false))",
                messageExpression=f"'privileged: ' + {CONTAINERS}.filter(c, c.?securityContext.?privileged.orValue(false)).map(c, c.name).join(',')",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "host-path",
        deploy("hostpath", [ctr("c", "nginx:1.27")], volumes=[{"name": "h", "hostPath": {"path": "/var/log"}}]),
        [v("object.spec.template.spec.?volumes.orValue([]).all(vol, !has(vol.hostPath))", "no hostPath")],
        rules=[DEPLOY_RULE],
    ),
    # --- variables
    Case(
        "variables",
        deploy("vars", [ctr("c", "nginx:1.27"), ctr("d", "docker.io/library/redis:7")]),
        [v("variables.bad.size() == 0", messageExpression="'images from elsewhere: ' + variables.bad.join(', ')")],
        policy={
            "variables": [
                {"name": "images", "expression": f"{CONTAINERS}.map(c, c.image)"},
                {"name": "bad", "expression": "variables.images.filter(i, !i.startsWith('docker.io/'))"},
            ]
        },
        rules=[DEPLOY_RULE],
    ),
    Case(
        "variable-bool",
        cm("z", {"k": "v"}),
        [v("variables.ok", "not ok")],
        policy={"variables": [{"name": "ok", "expression": "object.data.k == 'w'"}]},
    ),
    Case(
        "variable-error",
        cm("ve1", {"k": "v"}),
        [v("variables.bad == 'x'", "never")],
        policy={"variables": [{"name": "bad", "expression": "object.data.nokey"}]},
    ),
    Case(
        "variable-error-unused",
        cm("ve2", {"k": "v"}),
        [v("object.data.k == 'w' || variables.bad == 'x'", "k must be w")],
        policy={"variables": [{"name": "bad", "expression": "object.data.nokey"}]},
    ),
    Case("err-int-parse", cm("ep1", {"k": "abc"}), [v("int(object.data.k) > 1", "m")]),
    Case("err-overload", cm("ep2", {"k": "abc"}), [v("object.data.k > 5", "m")]),
    Case("err-div-zero", cm("ep3", {"k": "0"}), [v("10 / int(object.data.k) > 1", "m")]),
    Case("err-no-such-field-nested", cm("ep4", {"k": "v"}), [v("object.spec.x == 1", "m")]),
    Case(
        "map-all-keys",
        cm("mk1", {"a1": "v", "b2": "v"}),
        [v("object.data.all(k, k.startsWith('a'))", "keys start with a")],
    ),
    Case(
        "cluster-scoped-ns-null",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"cr-{RUN}"},
            "rules": [],
        },
        [v("namespaceObject != null || oldObject != null", "no namespace, no old object")],
        rules=[
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "apiVersions": ["v1"],
                "resources": ["clusterroles"],
                "operations": ["CREATE"],
            }
        ],
    ),
    Case("fmt-list", cm("fmt-list"), [v("false", messageExpression="'%s'.format([[1, 2]])")]),
    Case("fmt-map", cm("fmt-map"), [v("false", messageExpression="'%s'.format([{'a': 1}])")]),
    Case("fmt-float", cm("fmt-float"), [v("false", messageExpression="'%.2f and %f'.format([1.0 / 3.0, 2.5])")]),
    Case(
        "fmt-string-double",
        cm("fmt-string-double"),
        [v("false", messageExpression="string(2.0) + ' ' + string(1.5) + ' ' + string(1e20)")],
    ),
    Case("fmt-bool-null", cm("fmt-bool-null"), [v("false", messageExpression="'%s %s'.format([true, null])")]),
    Case("fmt-sci", cm("fmt-sci"), [v("false", messageExpression="'%e'.format([1234.5])")]),
    Case("fmt-hex", cm("fmt-hex"), [v("false", messageExpression="'%x %X %o %b'.format([255, 255, 8, 5])")]),
    # format() is cel-go's (celformat.py): locale grouping, %e's width quirk, Go's %g and %q, nesting
    Case(
        "fmt-grouping",
        cm("fmt-grouping"),
        [v("false", messageExpression="'%.3f / %f / %f'.format([1234.5678, 1e20, -0.0])")],
    ),
    Case(
        "fmt-sci-width",
        cm("fmt-sci-width"),
        [v("false", messageExpression="'%.12e|%e|%.3e|%.20e'.format([1.0 / 3.0, -0.0, 0.000123, -1e100])")],
    ),
    Case(
        "fmt-s-doubles",
        cm("fmt-s-doubles"),
        [v("false", messageExpression="'%s %s %s %s %s'.format([1234567.0, 123456.0, 0.00001, 0.1 + 0.2, -0.0])")],
    ),
    Case(
        "fmt-non-finite",
        cm("fmt-non-finite"),
        [v("false", messageExpression="'%f %f %e %s %s'.format(['NaN', 1.0/0.0, -1.0/0.0, 0.0/0.0, [1.0/0.0]])")],
    ),
    Case(
        "fmt-nested",
        cm("fmt-nested"),
        [
            v(
                "false",
                messageExpression="'%s'.format([[1.5, 'a\\\"b\\n', b'x', true, null, 2u, {'k': [1], 'b': -1.0 / 0.0}, duration('90m'), timestamp('2023-01-01T00:00:00.5Z'), type(1)]])",  # noqa: E501
            )
        ],
    ),
    Case(
        "fmt-object-map",
        cm("fmt-object-map", {"b": "2", "a": "tab\there", "c": "nbsp\u00a0é"}),
        [v("false", messageExpression="'data: %s, size: %d'.format([object.data, object.data.size()])")],
    ),
    Case(
        "fmt-in-expression",
        cm("fmt-in-expression", {"k": "hi"}),
        [v("'%x'.format([object.data.k]) == '6869'", "k must be hi")],
    ),
    Case(
        "fmt-runtime-error",
        cm("fmt-runtime-error", {"k": "abc"}),
        [v("false", "static message", messageExpression="'%d'.format([object.data.k])")],
    ),
    Case(
        "fmt-runtime-error-validation",
        cm("fmt-runtime-error-validation", {"k": "abc"}),
        [v("'%d'.format([object.data.k]) == 'abc'", "m")],
    ),
    Case(
        "str-funcs",
        cm("str-funcs"),
        [
            v(
                "false",
                messageExpression="'Hello'.charAt(1) + string('Hello'.indexOf('l')) + string('Hello'.lastIndexOf('l')) + 'a-b-c'.replace('-', '+', 1) + 'a,b,c'.split(',', 2).join('|') + 'Hello'.substring(1, 3) + strings.quote('x\"y')",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
    ),
    Case(
        "duration-string",
        cm("duration-string"),
        [v("false", messageExpression="string(duration('1h30m')) + ' ' + string(timestamp('2024-01-02T03:04:05Z'))")],
    ),
    Case("int-string", cm("int-string"), [v("false", messageExpression="string(-5) + string(5u) + string(b'ab')")]),
    Case("double-arith", cm("double-arith"), [v("false", messageExpression="string(0.1 + 0.2)")]),
    Case("size-unicode", cm("size-unicode"), [v("false", messageExpression="string('héllo'.size())")]),
    Case(
        "opt-none",
        cm("opt-none", {"k": "v"}),
        [
            v(
                "optional.none().orValue(1) == 1 && !optional.none().hasValue() && optional.of(2).value() == 2",
                "expected true",
            )
        ],
    ),
    Case(
        "opt-list-literal",
        cm("opt-list-literal", {"k": "v"}),
        [v("[1, ?optional.none(), ?optional.of(3)] == [1, 3]", "expected true")],
    ),
    Case(
        "opt-map-literal",
        cm("opt-map-literal", {"k": "v"}),
        [v("{?'a': optional.none(), 'b': 1}.size() == 1", "expected true")],
    ),
    Case(
        "opt-chain-missing",
        cm("opt-chain-missing", {"k": "v"}),
        [v("!object.?metadata.?annotations[?'x'].hasValue()", "expected true")],
    ),
    Case(
        "has-label",
        cm("has-label", {"k": "v"}),
        [v("has(object.metadata.labels) && !has(object.metadata.annotations)", "expected true")],
    ),
    Case(
        "type-checks",
        cm("type-checks", {"k": "v"}),
        [v("type(object.data) == map && type(object.data.k) == string && type(1) == int", "expected true")],
    ),
    Case(
        "uint-equality",
        cm("uint-equality", {"k": "v"}),
        [v("dyn(1u) == 1 && dyn(1) == 1.0 && dyn(2u) < 3.5", "expected true")],
    ),
    Case("string-compare", cm("string-compare", {"k": "v"}), [v("'abc' < 'abd' && 'b' > 'a'", "expected true")]),
    Case(
        "list-ops",
        cm("list-ops", {"k": "v"}),
        [v("[1, 2] + [3] == [1, 2, 3] && 2 in [1, 2] && !(5 in [1, 2])", "expected true")],
    ),
    Case("map-in", cm("map-in", {"k": "v"}), [v("'k' in object.data && !('z' in object.data)", "expected true")]),
    Case(
        "timestamp-math",
        cm("timestamp-math", {"k": "v"}),
        [
            v(
                "timestamp('2024-01-01T00:00:00Z') + duration('24h') == timestamp('2024-01-02T00:00:00Z')",
                "expected true",
            )
        ],
    ),
    Case(
        "duration-compare",
        cm("duration-compare", {"k": "v"}),
        [v("duration('90m') > duration('1h') && duration('1h').getMinutes() == 60", "expected true")],
    ),
    Case("dyn-cast", cm("dyn-cast", {"k": "v"}), [v("dyn(object.data.k) == 'v'", "expected true")]),
    Case(
        "unicode-matches",
        cm("unicode-matches", {"k": "v"}),
        [v("'héllo'.matches('^h.llo$') && 'héllo'.size() == 5", "expected true")],
    ),
    Case("exists-map", cm("exists-map", {"k": "v"}), [v("object.data.exists(key, key == 'k')", "expected true")]),
    Case(
        "filter-map-size",
        cm("filter-map-size", {"k": "v"}),
        [v("object.data.filter(key, key.startsWith('k')).size() == 1", "expected true")],
    ),
    Case(
        "int-limits",
        cm("int-limits", {"k": "v"}),
        [v("9223372036854775807 > 0 && -9223372036854775808 < 0", "expected true")],
    ),
    Case("double-nan", cm("double-nan", {"k": "v"}), [v("!(0.0/0.0 == 0.0/0.0)", "expected true")]),
    # --- matching
    Case(
        "match-condition-false",
        cm("mc1", {"k": "v"}),
        [v("false", "denied")],
        policy={"matchConditions": [{"name": "only-x", "expression": "object.metadata.name.startsWith('x')"}]},
    ),
    Case(
        "match-condition-true",
        cm("mc2", {"k": "v"}),
        [v("false", "denied")],
        policy={"matchConditions": [{"name": "only-mc", "expression": "object.metadata.name.startsWith('mc')"}]},
    ),
    Case(
        "match-condition-error",
        cm("mc3", {"k": "v"}),
        [v("false", "denied")],
        policy={"matchConditions": [{"name": "broken", "expression": "object.data.nokey == 'x'"}]},
    ),
    Case("rule-other-resource", cm("r1"), [v("false", "denied")], rules=[{**CM_RULE, "resources": ["secrets"]}]),
    Case(
        "rule-wildcard",
        cm("r2"),
        [v("false", "denied")],
        rules=[{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "operations": ["*"]}],
    ),
    Case(
        "rule-exclude",
        cm("r3"),
        [v("false", "denied")],
        policy={"matchConstraints": {"excludeResourceRules": [{**CM_RULE, "resourceNames": ["r3"]}]}},
    ),
    Case("rule-names-match", cm("r4"), [v("false", "denied")], rules=[{**CM_RULE, "resourceNames": ["r4"]}]),
    Case("rule-names-other", cm("r5"), [v("false", "denied")], rules=[{**CM_RULE, "resourceNames": ["zzz"]}]),
    Case("rule-scope-cluster", cm("r6"), [v("false", "denied")], rules=[{**CM_RULE, "scope": "Cluster"}]),
    Case("rule-scope-namespaced", cm("r7"), [v("false", "denied")], rules=[{**CM_RULE, "scope": "Namespaced"}]),
    Case(
        "namespace-selector-in",
        cm("ns1"),
        [v("false", "denied")],
        policy={"matchConstraints": {"namespaceSelector": {"matchLabels": {"team": "payments"}}}},
    ),
    Case(
        "namespace-selector-notin",
        cm("ns2"),
        [v("false", "denied")],
        policy={
            "matchConstraints": {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NS]}]
                }
            }
        },
    ),
    Case(
        "namespace-object",
        cm("ns3"),
        [
            v(
                "namespaceObject.metadata.labels.env == 'prod'",
                messageExpression="'namespace ' + namespaceObject.metadata.name + ' is ' + namespaceObject.metadata.labels.env",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
    ),
    Case(
        "object-selector",
        cm("os1", labels={"tier": "db"}),
        [v("false", "denied")],
        binding={
            "matchResources": {
                "objectSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}
            }
        },
    ),
    Case(
        "object-selector-miss",
        cm("os2", labels={"tier": "web"}),
        [v("false", "denied")],
        binding={"matchResources": {"objectSelector": {"matchLabels": {"tier": "db"}}}},
    ),
    Case(
        "binding-resource-rules",
        cm("br1"),
        [v("false", "denied")],
        binding={"matchResources": {"resourceRules": [{**CM_RULE, "resourceNames": ["other"]}]}},
    ),
    Case(
        "request-fields",
        cm("rq1"),
        [
            v(
                "request.operation == 'UPDATE'",
                messageExpression="request.operation + ' ' + request.kind.kind + ' ' + request.resource.resource + ' ' + request.namespace + '/' + request.name",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
    ),
    Case("request-typed", cm("rq2"), [v("request.name == 'x'", messageExpression="request.name")]),
    # --- actions
    Case("warn-only", cm("wa1"), [v("false", "warned")], actions=["Warn"]),
    Case("audit-only", cm("wa2"), [v("false", "audited")], actions=["Audit"]),
    Case("deny-and-audit", cm("wa3"), [v("false", "denied and audited")], actions=["Deny", "Audit"]),
    # --- params
    Case(
        "param-by-name-deny",
        deploy("pbig", [ctr("c", "nginx:1.27")], replicas=5),
        [
            v(
                "object.spec.replicas <= int(params.data.maxReplicas)",
                messageExpression="'at most ' + params.data.maxReplicas + ' replicas'",
            )
        ],
        policy=PARAM_KIND,
        binding={"paramRef": {"name": "limits-a", "namespace": NS, "parameterNotFoundAction": "Deny"}},
        params=[cm("limits-a", {"maxReplicas": "3"})],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "param-by-name-ok",
        deploy("psmall", [ctr("c", "nginx:1.27")], replicas=2),
        [v("object.spec.replicas <= int(params.data.maxReplicas)", "too many")],
        policy=PARAM_KIND,
        binding={"paramRef": {"name": "limits-b", "namespace": NS, "parameterNotFoundAction": "Deny"}},
        params=[cm("limits-b", {"maxReplicas": "3"})],
        rules=[DEPLOY_RULE],
    ),
    Case(
        "param-selector",
        cm("ps1", {"k": "v"}),
        [v("object.data.k != params.data.forbidden", messageExpression="'k is forbidden by ' + params.metadata.name")],
        policy=PARAM_KIND,
        binding={"paramRef": {"selector": {"matchLabels": {"set": f"sel-{RUN}"}}, "parameterNotFoundAction": "Deny"}},
        params=[
            cm("sel-1", {"forbidden": "x"}, {"set": f"sel-{RUN}"}),
            cm("sel-2", {"forbidden": "v"}, {"set": f"sel-{RUN}"}),
        ],
    ),
    Case(
        "param-not-found-deny",
        cm("pn1"),
        [v("true")],
        policy=PARAM_KIND,
        binding={"paramRef": {"name": "absent", "parameterNotFoundAction": "Deny"}},
    ),
    Case(
        "param-not-found-allow",
        cm("pn2"),
        [v("false", "denied")],
        policy=PARAM_KIND,
        binding={"paramRef": {"name": "absent", "parameterNotFoundAction": "Allow"}},
    ),
    Case(
        "param-kind-no-ref", cm("pn3"), [v("params != null", "params are null without a paramRef")], policy=PARAM_KIND
    ),
    # --- cluster-scoped and other kinds
    Case(
        "cluster-admin-to-sa",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"crb-{RUN}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "default"}],
        },
        [
            v(
                "object.roleRef.name != 'cluster-admin' || object.subjects.all(s, s.kind != 'ServiceAccount' || s.namespace in ['kube-system', 'reconciler-system'])",  # noqa: E501 (a CEL expression reads best on one line)
                messageExpression="'cluster-admin for ' + object.subjects.filter(s, s.kind == 'ServiceAccount').map(s, s.namespace + '/' + s.name).join(', ')",  # noqa: E501 (a CEL expression reads best on one line)
            )
        ],
        rules=[
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "apiVersions": ["v1"],
                "resources": ["clusterrolebindings"],
                "operations": ["CREATE"],
            }
        ],
    ),
    Case(
        "namespace-itself",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"pdiff-new-{RUN}", "labels": {"team": "x"}}},
        [
            v(
                "object.metadata.labels.team != 'x'",
                messageExpression="'team ' + object.metadata.labels.team + ' for ' + request.name"
                + " + ' in [' + request.namespace + ']'",
            )
        ],
        rules=[
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["namespaces"],
                "operations": ["CREATE"],
                "scope": "Cluster",
            }
        ],
    ),
    Case(
        "secret-type",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s1", "namespace": NS},
            "type": "Opaque",
            "data": {"k": "dmFsdWU="},
        },
        [v("object.type != 'Opaque'", "plain secret")],
        rules=[{**CM_RULE, "resources": ["secrets"]}],
    ),
]


def build(case: Case) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The policy, binding and params to install for ``case``, and its labelled object."""
    name = f"pdiff-{RUN}-{case.id}"
    spec: dict[str, Any] = copy.deepcopy(case.policy)
    constraints = spec.pop("matchConstraints", {})
    spec["matchConstraints"] = {"resourceRules": case.rules, **constraints}
    spec["validations"] = case.validations
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    bspec: dict[str, Any] = {"policyName": name, "validationActions": case.actions, **copy.deepcopy(case.binding)}
    mr = bspec.setdefault("matchResources", {})
    sel = mr.setdefault("objectSelector", {})
    sel.setdefault("matchExpressions", []).append({"key": CASE_LABEL, "operator": "In", "values": [case.id]})
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": bspec,
    }
    obj = copy.deepcopy(case.obj)
    obj["metadata"].setdefault("labels", {})[CASE_LABEL] = case.id
    return [policy, binding, *case.params], obj


def path_for(kube_obj: dict[str, Any]) -> str:
    group_version = kube_obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {"ConfigMap": "configmaps", "Deployment": "deployments", "Secret": "secrets", "Namespace": "namespaces"}
    plural["ClusterRoleBinding"] = "clusterrolebindings"
    plural.update(RoleBinding="rolebindings", DaemonSet="daemonsets", StatefulSet="statefulsets", Pod="pods")
    plural.update(CronJob="cronjobs", ClusterRole="clusterroles")
    plural["ValidatingAdmissionPolicy"] = "validatingadmissionpolicies"
    plural["ValidatingAdmissionPolicyBinding"] = "validatingadmissionpolicybindings"
    ns = kube_obj["metadata"].get("namespace")
    resource = plural[kube_obj["kind"]]
    return f"{base}/namespaces/{ns}/{resource}" if ns else f"{base}/{resource}"


def server_verdict(kube: client.Kube, obj: dict[str, Any]) -> tuple[bool, str, str]:
    """(allowed, reason, message) of a dry-run create."""
    try:
        kube.request("POST", path_for(obj), query=[("dryRun", "All")], body=obj)
    except client.KubeError as e:
        if "ValidatingAdmissionPolicy" not in e.message:
            raise
        return False, e.reason, e.message
    return True, "", ""


def offline_verdict(installed: list[dict[str, Any]], obj: dict[str, Any]) -> tuple[bool, Violation | None]:
    ps = policy_set_from_manifests([Manifest(o, "case.yaml", i) for i, o in enumerate(installed)])
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": NS_LABELS}}
    violations = evaluate([Manifest(ns, "ns.yaml", 1), Manifest(obj, "obj.yaml", 1)], ps)
    denies = [x for x in violations if x.action == "Deny" and x.object != f"Namespace/{NS}"]
    return (not denies), (denies[0] if denies else None)


@pytest.fixture(scope="module")
def installed(kube: client.Kube) -> Iterator[dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]]:
    """Every case installed, plus a sentinel proving the apiserver compiled them all."""
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS, "labels": NS_LABELS}})
    created: list[dict[str, Any]] = []
    built = {c.id: build(c) for c in CASES}
    try:
        for objs, _ in built.values():
            for o in objs:
                kube.request("POST", path_for(o), body=o)
                created.append(o)
        sentinel = Case("sentinel", cm("sentinel"), [v("object.metadata.name != 'sentinel'", "sentinel")])
        for o in build(sentinel)[0]:
            kube.request("POST", path_for(o), body=o)
            created.append(o)
        probe = build(sentinel)[1]
        deadline = time.monotonic() + 60
        while server_verdict(kube, probe)[0]:
            if time.monotonic() > deadline:
                pytest.fail("the sentinel policy was not enforced within 60s")
            time.sleep(0.2)
        yield built
    finally:
        for o in reversed(created):
            if o.get("metadata", {}).get("namespace"):
                continue  # params go with the namespace
            try:
                kube.request("DELETE", f"{path_for(o)}/{o['metadata']['name']}")
            except client.KubeError as e:
                if not e.not_found:
                    raise
        kube.request("DELETE", f"/api/v1/namespaces/{NS}")


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_offline_verdict_equals_apiserver(case: Case, kube: client.Kube, installed: Any) -> None:
    objs, obj = installed[case.id]
    allowed, reason, message = server_verdict(kube, obj)
    ours_allowed, violation = offline_verdict(objs, obj)
    ours = "allowed" if violation is None else f"denied ({violation.reason}): {admission_message(violation)}"
    theirs = "allowed" if allowed else f"denied ({reason}): {message}"
    assert ours_allowed == allowed, f"apiserver: {theirs}\nours:      {ours}"
    if violation is not None:
        assert message.endswith(": " + admission_message(violation)), f"apiserver: {theirs}\nours:      {ours}"
        assert reason == violation.reason, f"apiserver: {theirs}\nours:      {ours}"


# --------------------------------------------------------------------------- the default set


DEFAULTS = Path(__file__).resolve().parents[2] / "policies"
DEFAULT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policy" / "defaults"
FIXTURE_NAMESPACES = ("shop", "monitoring", "reconciler-system")


def renamed_defaults() -> list[dict[str, Any]]:
    """The shipped policies, renamed for this run and bound only to objects labelled for it."""
    out = []
    for m in load_path(DEFAULTS):
        obj = copy.deepcopy(m.obj)
        if obj["kind"] == "ValidatingAdmissionPolicy":
            obj["metadata"]["name"] += f"-{RUN}"
        elif obj["kind"] == "ValidatingAdmissionPolicyBinding":
            obj["metadata"]["name"] += f"-{RUN}"
            obj["spec"]["policyName"] += f"-{RUN}"
            sel = obj["spec"].setdefault("matchResources", {}).setdefault("objectSelector", {})
            sel.setdefault("matchExpressions", []).append({"key": CASE_LABEL, "operator": "In", "values": [RUN]})
        out.append(obj)
    return out


def labelled_fixtures() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEFAULT_FIXTURES.glob("*/*.yaml")):
        for m in load_path(path):
            obj = copy.deepcopy(m.obj)
            obj["metadata"].setdefault("labels", {})[CASE_LABEL] = RUN
            out.append((f"{path.parent.name}/{path.name}:{obj['kind']}/{obj['metadata']['name']}", obj))
    return out


def _create(kube: client.Kube, path: str, body: dict[str, Any]) -> bool:
    """Create ``body``; False if it already existed (then it is not ours to delete)."""
    try:
        kube.request("POST", path, body=body)
    except client.KubeError as e:
        if e.conflict:
            return False
        raise
    return True


def test_default_policies_agree_with_apiserver(kube: client.Kube) -> None:
    """Every fixture of the default set gets the same verdict (and message) from the apiserver."""
    installed = renamed_defaults()
    ours = policy_set_from_manifests([Manifest(o, "policies.yaml", i) for i, o in enumerate(installed)])
    created: list[str] = []
    try:
        for ns in FIXTURE_NAMESPACES:
            if _create(kube, "/api/v1/namespaces", {"metadata": {"name": ns}}):
                created.append(f"/api/v1/namespaces/{ns}")
        # Pods need their ServiceAccount (no controller-manager may have made it).
        _create(kube, "/api/v1/namespaces/shop/serviceaccounts", {"metadata": {"name": "default"}})
        for o in installed:
            kube.request("POST", path_for(o), body=o)
            created.append(f"{path_for(o)}/{o['metadata']['name']}")
        sentinel = build(Case("sentinel-defaults", cm("sentinel"), [v("object.metadata.name != 'sentinel'", "s")]))
        deadline = time.monotonic() + 60
        for o in sentinel[0]:
            kube.request("POST", path_for(o), body=o)
            created.append(f"{path_for(o)}/{o['metadata']['name']}")
        probe = {**sentinel[1], "metadata": {**sentinel[1]["metadata"], "namespace": "shop"}}
        while server_verdict(kube, probe)[0]:
            if time.monotonic() > deadline:
                pytest.fail("the sentinel policy was not enforced within 60s")
            time.sleep(0.2)
        checked = denied = 0
        for name, obj in labelled_fixtures():
            allowed, _reason, message = server_verdict(kube, obj)
            violations = evaluate([Manifest(obj, "fixture.yaml", 1)], ours)
            deny = next((x for x in violations if x.action == "Deny"), None)
            assert allowed == (deny is None), f"{name}: apiserver {message or 'allowed'}; ours {violations}"
            if deny is not None:
                assert message.endswith(": " + admission_message(deny)), f"{name}: {message} != {deny}"
                denied += 1
            checked += 1
        assert checked >= 20
        assert denied >= 8
    finally:
        for path in reversed(created):
            try:
                kube.request("DELETE", path)
            except client.KubeError as e:
                if not e.not_found:
                    raise
